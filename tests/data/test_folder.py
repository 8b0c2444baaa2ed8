"""Plain ``images/`` + ``masks/`` folders: pairing by stem, seeded val split, classes.txt."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.data import build_dataset, custom_info
from edgeseg.data.folder import find_pairs, folder_classes
from edgeseg.errors import DataError
from tests.synthetic import make_folder_dataset, make_list_dataset


def test_single_folder_splits_into_disjoint_seeded_train_and_val(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "d", n=20)
    train, val = find_pairs(root, "train"), find_pairs(root, "val")
    assert len(val) == 2 and len(train) == 18
    assert not {p[0] for p in train} & {p[0] for p in val}
    assert val == find_pairs(root, "val")  # same hold-out every time
    assert all(im.stem == m.stem and m.suffix == ".png" for im, m in train + val)


def test_split_subfolders_and_list_files_both_read(tmp_path: Path) -> None:
    for split in ("train", "val"):
        make_folder_dataset(tmp_path / "d" / split, n=3)
    assert len(find_pairs(tmp_path / "d", "val")) == 3
    lists = make_list_dataset(tmp_path / "l")
    assert len(find_pairs(lists, "train")) == 8  # list files keep working


def test_unmatched_and_missing_layouts_are_one_line_errors(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "d", n=4)
    (root / "masks" / "scene_002.png").unlink()
    with pytest.raises(DataError, match=r"scene_002\.jpg has no mask"):
        find_pairs(root, "train")
    Image.new("L", (4, 4)).save(root / "masks" / "extra.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="images/ \\+ masks/"):
        find_pairs(tmp_path / "empty", "train")


def test_classes_txt_names_the_classes(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "d", classes=["road", "car", "sky"])
    assert folder_classes(root) == ["road", "car", "sky"]
    ds = build_dataset(root, "train", custom_info(["road", "car", "sky"]))
    assert len(ds) == 9
    assert folder_classes(tmp_path) is None


def test_train_on_a_plain_folder_then_eval_the_run(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "d", n=10, classes=["a", "b", "c"])
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "l3unet",
        "--data",
        str(root),
        "--epochs",
        "1",
        "--out",
        str(run),
        "data.crop_size=[24,32]",
        "train.batch_size=4",
        "train.progress=false",
    ]
    assert main(argv) == 0
    assert (run / "best.pt").is_file()
    assert main(["eval", str(run), "--data", str(root), "--json"]) == 0
