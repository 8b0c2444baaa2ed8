"""A labelling tool's COCO export read as it comes: CVAT's and Roboflow's layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.data import CocoDataset, build_dataset, data_info
from edgeseg.errors import DataError

H, W = 24, 32
# CVAT numbers categories from 1 in the order they were defined; "road" first.
CATEGORIES = [
    {"id": 1, "name": "road", "supercategory": ""},
    {"id": 2, "name": "car", "supercategory": ""},
]


def _images_and_annotations(n: int) -> tuple[list[dict], list[dict]]:
    images, anns = [], []
    for i in range(1, n + 1):
        images.append({"id": i, "file_name": f"frame_{i:06d}.jpg", "width": W, "height": H})
        # the road: the bottom half (a polygon), a car on it (smaller, drawn last)
        anns.append(
            {
                "id": 2 * i,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "area": 384.0,
                "segmentation": [[0, 12, 31, 12, 31, 23, 0, 23]],
            }
        )
        anns.append(
            {
                "id": 2 * i + 1,
                "image_id": i,
                "category_id": 2,
                "iscrowd": 0,
                "area": 36.0,
                "segmentation": [[4, 14, 9, 14, 9, 19, 4, 19]],
            }
        )
    return images, anns


def _export(root: Path, layout: str, splits: dict[str, int]) -> Path:
    for split, n in splits.items():
        images, anns = _images_and_annotations(n)
        doc = {"categories": CATEGORIES, "images": images, "annotations": anns}
        if layout == "cvat":  # annotations/instances_SPLIT.json, images/SPLIT/
            ann, img_dir = root / "annotations" / f"instances_{split}.json", root / "images" / split
        else:  # roboflow: SPLIT/_annotations.coco.json with its images beside it
            ann, img_dir = root / split / "_annotations.coco.json", root / split
        ann.parent.mkdir(parents=True, exist_ok=True)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps(doc))
        rng = np.random.default_rng(0)
        for im in images:
            pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(img_dir / im["file_name"])
    return root


@pytest.mark.parametrize("layout", ["cvat", "roboflow"])
def test_a_coco_export_gives_classes_and_label_maps(tmp_path: Path, layout: str) -> None:
    root = _export(tmp_path / layout, layout, {"train": 3, "val": 2})
    info = data_info(root, "custom")
    assert info.name == "coco" and info.classes == ("background", "road", "car")
    ds = build_dataset(root, "val", info)
    assert isinstance(ds, CocoDataset) and len(ds) == 2
    _, y = ds[0]
    assert y.shape == (H, W)
    assert y[2, 2] == 0 and y[22, 25] == 1 and y[16, 6] == 2  # background, road, car on top


def test_train_and_data_check_read_a_coco_export_without_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _export(tmp_path / "cvat", "cvat", {"train": 4, "val": 2})
    assert main(["data", "check", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "road" in printed and "car" in printed and "background" in printed
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "segfast",
            "--data",
            str(root),
            "--out",
            str(out),
            "train.epochs=1",
            "train.batch_size=2",
            "data.crop_size=16x16",
            "train.progress=false",
            "train.tensorboard=false",
        ]
    )
    assert code == 0 and (out / "best.pt").is_file()


def test_a_category_outside_the_classes_is_named(tmp_path: Path) -> None:
    root = _export(tmp_path / "cvat", "cvat", {"val": 1})
    info = data_info(root, "custom")
    doc = json.loads((root / "annotations" / "instances_val.json").read_text())
    doc["categories"].append({"id": 3, "name": "tram"})
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"categories \['tram'\] are not among the classes"):
        CocoDataset(root, "val", info)
