"""Class frequencies (cached once) and the log-frequency class weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import ListDataset, class_frequencies, class_weights, custom_info
from tests.synthetic import make_list_dataset

INFO = custom_info(["a", "b", "c"])


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))


def _counts(root: Path) -> np.ndarray:
    total = np.zeros(3, np.int64)
    for line in (root / "train.txt").read_text().split("\n"):
        if line:
            lbl = np.asarray(Image.open(root / line.split()[1])).reshape(-1)
            total += np.bincount(lbl[lbl != 255], minlength=3)[:3]
    return total


def test_frequencies_match_a_direct_count(tmp_path: Path) -> None:
    root = make_list_dataset(tmp_path / "d")
    stats = class_frequencies(ListDataset(root, "train", INFO))
    expected = _counts(root)
    assert stats["counts"] == expected.tolist()
    assert np.isclose(sum(stats["frequencies"]), 1.0)
    assert stats["void_pixels"] == 8 * 2 * 32 and stats["num_images"] == 8


def test_frequencies_are_cached_and_invalidated(tmp_path: Path) -> None:
    root = make_list_dataset(tmp_path / "d")
    ds = ListDataset(root, "train", INFO)
    first = class_frequencies(ds)
    assert len(list((tmp_path / "cache" / "class_stats").glob("*.json"))) == 1

    def boom(i: int) -> None:
        raise AssertionError("labels were read again")

    ds.load_pair = boom  # type: ignore[method-assign]
    assert class_frequencies(ds) == first
    # editing a label changes the fingerprint, so the statistics are recomputed
    lbl = root / "trainannot" / "000.png"
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(lbl)
    os.utime(lbl, ns=(1, 1))
    fresh = class_frequencies(ListDataset(root, "train", INFO))
    assert fresh["counts"] == _counts(root).tolist() != first["counts"]


def test_class_weights(tmp_path: Path) -> None:
    root = make_list_dataset(tmp_path / "d")
    ds = ListDataset(root, "train", INFO)
    p = np.asarray(class_frequencies(ds)["frequencies"])
    assert class_weights(ds, "none") is None
    assert np.allclose(class_weights(ds, "enet"), 1 / np.log(1.02 + p))
    assert np.allclose(class_weights(ds, "thesis"), 1 / np.log(1.10 + p))
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(ds, "median")
