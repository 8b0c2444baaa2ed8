"""Generated street scenes: deterministic, every class present, readable as a custom folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data import build_dataset
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, make_street_dataset, street_info, street_scene


def test_scenes_are_deterministic_and_cover_the_classes() -> None:
    a = street_scene(np.random.default_rng(3), (90, 120))
    b = street_scene(np.random.default_rng(3), (90, 120))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (90, 120, 3) and a[0].dtype == np.uint8
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        seen |= set(np.unique(street_scene(rng, (90, 120))[1]).tolist())
    assert seen == {*range(len(SYNTHETIC_CLASSES)), 255}


def test_written_dataset_reads_as_custom_folder(tmp_path: Path) -> None:
    root = make_street_dataset(tmp_path / "d", {"train": 3, "val": 2}, size=(48, 64))
    ds = build_dataset(root, "val", street_info())
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (3, 48, 64) and y.shape == (48, 64)
    assert int(y.max()) == 255 and int(y[y != 255].max()) < len(SYNTHETIC_CLASSES)
