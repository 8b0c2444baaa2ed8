"""Shared fixtures: deterministic torch, few threads (CI has 2 cores), a tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeseg.config import load_config
from edgeseg.engine.train import train
from tests.synthetic import make_list_dataset


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(data_root, run_dir)`` of a 2-epoch squeeze_unet run on 3 synthetic classes."""
    base = tmp_path_factory.mktemp("tiny")
    data = make_list_dataset(base / "data", {"train": 8, "val": 5, "test": 3}, size=(40, 56))
    run = base / "run"
    cfg = load_config(
        None,
        [
            f"data.root={data}",
            "data.preset=custom",
            "data.classes=[a, b, c]",
            "data.crop_size=32x48",
            f"train.out={run}",
            "train.epochs=2",
            "train.batch_size=4",
            "train.progress=false",
            "optim.lr=3e-3",
        ],
    )
    train(cfg)
    return data, run
