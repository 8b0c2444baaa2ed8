"""Cityscapes and COCO super-classes, on tiny fixtures in their official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import CityscapesDataset, CocoSuperDataset, build_dataset, get_preset
from edgeseg.data.coco import rle_decode, rle_from_string
from edgeseg.errors import DataError

# ----------------------------------------------------------------------------- Cityscapes


def _cityscapes(root: Path) -> Path:
    for split, city, n in (("train", "aachen", 2), ("val", "lindau", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            img_dir = root / "leftImg8bit" / split / city
            lbl_dir = root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            lbl_dir.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 8), (10, 20, 30)).save(img_dir / f"{stem}_leftImg8bit.png")
            ids = np.zeros((8, 16), np.uint8)
            ids[:, :4] = 7  # road -> 0
            ids[:, 4:8] = 26  # car -> 13
            ids[:, 8:12] = 33  # bicycle -> 18
            ids[:, 12:] = 4  # static (void) -> 255
            Image.fromarray(ids).save(lbl_dir / f"{stem}_gtFine_labelIds.png")
            # the other gtFine files of the release must be ignored
            Image.fromarray(ids).save(lbl_dir / f"{stem}_gtFine_color.png")
    return root


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    root = _cityscapes(tmp_path / "cityscapes")
    ds = build_dataset(root, "train", get_preset("cityscapes"))
    assert isinstance(ds, CityscapesDataset) and len(ds) == 2
    _, y = ds[0]
    assert y[0, 0] == 0 and y[0, 5] == 13 and y[0, 9] == 18 and y[0, 13] == 255
    assert len(CityscapesDataset(root, "train+val")) == 3
    assert get_preset("cityscapes").num_classes == 19


def test_cityscapes_errors_name_the_path(tmp_path: Path) -> None:
    root = _cityscapes(tmp_path / "cityscapes")
    with pytest.raises(DataError, match=r"Cityscapes images not found: .*leftImg8bit/test"):
        CityscapesDataset(root, "test")
    next((root / "gtFine" / "val").rglob("*_labelIds.png")).unlink()
    with pytest.raises(DataError, match=r"Cityscapes label not found for .*lindau_000000"):
        CityscapesDataset(root, "val")


# ----------------------------------------------------------------------------- COCO


def _rle_to_string(counts: list[int]) -> str:
    """COCO's rleToString (the encoder), to produce compressed RLE in the fixture."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = not ((ch & 0x10) == 0 and x == 0) and not ((ch & 0x10) and x == -1)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def _rle_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1).astype(np.uint8)  # column-major
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    return counts


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((23, 17)) > 0.6
    counts = _rle_counts(mask)
    assert rle_from_string(_rle_to_string(counts)) == counts
    assert (rle_decode({"size": [23, 17], "counts": counts}) == mask).all()
    assert (rle_decode({"size": [23, 17], "counts": _rle_to_string(counts)}) == mask).all()


def _coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    h, w = 20, 30
    Image.new("RGB", (w, h)).save(root / "val2017" / "000000000001.jpg")
    Image.new("L", (w, h)).save(root / "val2017" / "000000000002.jpg")  # grayscale JPEG
    car = np.zeros((h, w), bool)
    car[10:20, 0:10] = True
    crowd = np.zeros((h, w), bool)
    crowd[0:5, 20:30] = True
    anns = [
        # a person polygon (large), a dog (animal) polygon on top of it (small)
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "area": 200.0,
            "segmentation": [[10, 0, 29, 0, 29, 19, 10, 19]],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 18,
            "iscrowd": 0,
            "area": 16.0,
            "segmentation": [[12, 12, 16, 12, 16, 16, 12, 16]],
        },
        # a car as compressed RLE, a crowd of people as uncompressed RLE
        {
            "id": 3,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "area": 100.0,
            "segmentation": {"size": [h, w], "counts": _rle_to_string(_rle_counts(car))},
        },
        {
            "id": 4,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "area": 50.0,
            "segmentation": {"size": [h, w], "counts": _rle_counts(crowd)},
        },
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "height": h, "width": w},
            {"id": 2, "file_name": "000000000002.jpg", "height": h, "width": w},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
        ],
        "annotations": anns,
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_coco_super_classes_from_instances(tmp_path: Path) -> None:
    root = _coco(tmp_path / "coco")
    info = get_preset("coco_super")
    assert info.num_classes == 13 and info.classes[0] == "background"
    ds = build_dataset(root, "val", info)
    assert isinstance(ds, CocoSuperDataset) and len(ds) == 2
    _, y = ds[0]
    person, animal, vehicle = (info.classes.index(c) for c in ("person", "animal", "vehicle"))
    assert y[8, 12] == person  # inside the person polygon
    assert y[14, 14] == animal  # the small dog is drawn over the person
    assert y[15, 5] == vehicle  # compressed RLE
    assert y[2, 25] == 255  # crowd -> void
    assert y[5, 5] == 0  # background
    _, y2 = ds[1]  # an image without annotations is all background
    assert (y2 == 0).all()


def test_coco_errors(tmp_path: Path) -> None:
    root = _coco(tmp_path / "coco")
    with pytest.raises(DataError, match=r"COCO annotations not found: .*instances_train2017"):
        CocoSuperDataset(root, "train")
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DataError, match=r"malformed COCO annotation file .*instances_val2017"):
        CocoSuperDataset(root, "val")
