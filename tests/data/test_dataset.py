"""List dataset: loading, normalisation, and one-line errors naming the bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from edgeseg.data import ListDataset, build_dataset, custom_info, get_preset, normalize_image
from edgeseg.data.transforms import eval_transform, train_transform
from edgeseg.errors import DataError, EdgesegError
from tests.synthetic import make_list_dataset

INFO = custom_info(["a", "b", "c"], ignore_index=255)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_list_dataset(tmp_path / "data", {"train": 6, "val": 3, "test": 2})


def test_items_are_normalised_tensors(root: Path) -> None:
    ds = ListDataset(root, "train", INFO)
    x, y = ds[0]
    assert x.shape == (3, 24, 32) and x.dtype == torch.float32
    assert y.shape == (24, 32) and y.dtype == torch.int64
    raw = np.asarray(Image.open(root / "train" / "000.png"))
    expected = (raw / 255.0 - np.array(INFO.mean)) / np.array(INFO.std)
    assert np.allclose(x.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert set(y.unique().tolist()) <= {0, 1, 2, 255}


def test_test_split_and_concatenated_splits(root: Path) -> None:
    assert len(ListDataset(root, "test", INFO)) == 2
    assert len(ListDataset(root, "train+val", INFO)) == 9


def test_in_memory_matches_lazy(root: Path) -> None:
    lazy = ListDataset(root, "val", INFO)
    cached = ListDataset(root, "val", INFO, in_memory=True)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i][0], cached[i][0]) and torch.equal(lazy[i][1], cached[i][1])


def test_camvid_preset() -> None:
    info = get_preset("camvid")
    assert info.num_classes == 11 and info.ignore_index == 11
    assert info.classes[3] == "Road" and info.palette[3] == (128, 64, 128)


def test_unknown_preset_is_a_one_line_error() -> None:
    with pytest.raises(EdgesegError, match="unknown dataset preset 'kitti'"):
        get_preset("kitti")


# ----------------------------------------------------------------------------- bad input


def _expect(match: str, *args: object, **kw: object) -> None:
    with pytest.raises(DataError, match=match) as e:
        ds = ListDataset(*args, **kw)  # type: ignore[arg-type]
        ds.validate()
    assert "\n" not in str(e.value)


def test_missing_root_and_list(tmp_path: Path, root: Path) -> None:
    _expect("data root is not a folder", tmp_path / "nope", "train", INFO)
    _expect(
        r"list file not found: .*valid\.txt \(splits in .*: test, train, val\)", root, "valid", INFO
    )


def test_empty_and_malformed_list(root: Path) -> None:
    (root / "empty.txt").write_text("# nothing\n\n")
    _expect(r"list file is empty: .*empty\.txt", root, "empty", INFO)
    (root / "bad.txt").write_text("train/000.png trainannot/000.png\ntrain/001.png\n")
    _expect(r"bad\.txt:2: expected 'image_path label_path'", root, "bad", INFO)


def test_missing_image(root: Path) -> None:
    (root / "train" / "003.png").unlink()
    _expect(r"image not found: .*train/003\.png", root, "train", INFO)


def test_corrupt_image(root: Path) -> None:
    (root / "train" / "002.png").write_bytes(b"\x89PNG not really")
    _expect(r"cannot read image .*train/002\.png", root, "train", INFO)


def test_missing_label(root: Path) -> None:
    (root / "trainannot" / "001.png").unlink()
    _expect(r"label not found: .*trainannot/001\.png", root, "train", INFO)


def test_label_size_mismatch(root: Path) -> None:
    Image.new("L", (30, 24)).save(root / "trainannot" / "004.png")
    _expect(
        r"label .*trainannot/004\.png is 30x24 \(WxH\) but its image .* is 32x24",
        root,
        "train",
        INFO,
    )


def test_label_ids_out_of_range(root: Path) -> None:
    lbl = np.zeros((24, 32), np.uint8)
    lbl[0, 0], lbl[1, 1] = 7, 9
    Image.fromarray(lbl).save(root / "trainannot" / "005.png")
    _expect(
        r"label .*trainannot/005\.png has ids \[7, 9\] outside 0\.\.2 \(void is 255\)",
        root,
        "train",
        INFO,
    )


def test_rgb_label_of_unknown_colours_is_refused(root: Path) -> None:
    """A colour mask is read with the palette; colours it does not name are listed."""
    Image.new("RGB", (32, 24), (1, 2, 3)).save(root / "trainannot" / "000.png")
    _expect(
        r"label .*trainannot/000\.png has 1 colour\(s\) the label map does not name: "
        r"\(1,2,3\) 768 px",
        root,
        "train",
        INFO,
    )


def test_non_rgb_images_are_converted(root: Path) -> None:
    rgb = np.asarray(Image.open(root / "train" / "000.png"))
    Image.fromarray(rgb).convert("L").save(root / "train" / "000.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "train" / "001.png")
    ds = ListDataset(root, "train", INFO)
    gray, _ = ds.load_pair(0)
    assert gray.shape == (24, 32, 3) and (gray[..., 0] == gray[..., 2]).all()
    rgba, _ = ds.load_pair(1)
    assert rgba.shape == (24, 32, 3)


def test_16_bit_image_is_refused(root: Path) -> None:
    Image.fromarray(np.zeros((24, 32), np.uint16)).save(root / "train" / "000.png")
    _expect(r"image .*train/000\.png has mode I;16 .* convert it to 8-bit RGB", root, "train", INFO)


# ----------------------------------------------------------------------------- augmentation


def _aug() -> object:
    return train_transform((16, 16), ignore_index=255, scale=(0.75, 1.5), translate=0.1)


def test_augmentation_is_seeded_per_epoch_and_sample(root: Path) -> None:
    ds = ListDataset(root, "train", INFO, _aug(), seed=3)
    a = ds[1]
    assert torch.equal(a[0], ds[1][0]) and torch.equal(a[1], ds[1][1])
    ds.set_epoch(1)
    assert not torch.equal(a[0], ds[1][0])
    other = ListDataset(root, "train", INFO, _aug(), seed=4)
    assert not torch.equal(a[0], other[1][0])


def test_augmentation_independent_of_workers(root: Path) -> None:
    ds = ListDataset(root, "train", INFO, _aug(), seed=1)
    ds.set_epoch(2)
    one = next(iter(DataLoader(ds, batch_size=6, num_workers=0)))
    two = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_labels_are_resampled_nearest_and_padded_with_void(root: Path) -> None:
    aug = train_transform((40, 48), ignore_index=255, scale=(1.3, 1.7), color_jitter=0.5)
    ds = ListDataset(root, "train", INFO, aug)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 40, 48) and y.shape == (40, 48)
        assert set(y.unique().tolist()) <= {0, 1, 2, 255}


def test_eval_transform_resizes_both(root: Path) -> None:
    ds = ListDataset(root, "val", INFO, eval_transform((12, 16)))
    x, y = ds[0]
    assert x.shape == (3, 12, 16) and y.shape == (12, 16)
    assert set(y.unique().tolist()) <= {0, 1, 2, 255}


def test_normalize_image_round_numbers() -> None:
    img = np.full((2, 2, 3), 255, np.uint8)
    x = normalize_image(img, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.allclose(x, torch.ones(3, 2, 2))


def test_build_dataset_picks_the_layout(root: Path) -> None:
    assert isinstance(build_dataset(root, "val", INFO), ListDataset)
