"""The recipe's ``compress`` section inside edgeseg.train: schedules run, checkpoints load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeseg.config import load_config
from edgeseg.engine.checkpoint import load_checkpoint, load_model
from edgeseg.engine.train import train
from edgeseg.errors import ConfigError
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model
from tests.synthetic import make_list_dataset


def _cfg(tmp_path: Path, data: Path, *extra: str):
    return load_config(
        None,
        [
            f"data.root={data}",
            "data.preset=custom",
            "data.classes=[a, b, c]",
            "data.crop_size=32x48",
            f"train.out={tmp_path / 'run'}",
            "train.epochs=3",
            "train.batch_size=4",
            "train.progress=false",
            "model.name=essnet",
            "model.kwargs={layer: D}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cdata")
    return make_list_dataset(base / "data", {"train": 8, "val": 4}, size=(40, 56))


def test_gradual_grouping_and_sparsity_in_training(tmp_path: Path, data: Path) -> None:
    cfg = _cfg(
        tmp_path,
        data,
        "compress.groups=2",
        "compress.group_fraction=0.5",
        "compress.sparsity=0.5",
        "compress.sparsity_every=1",
        "compress.sparsity_layers=['encoder.*']",
    )
    result = train(cfg)
    rows = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert rows[0]["group_alpha"] > 0.0 and rows[-1]["group_alpha"] == 0.0
    assert rows[-1]["sparsity"] == pytest.approx(0.5)
    # last.pt (masks inside) loads as a plain, extracted DG2 model.
    model, _ = load_model(result.run_dir / "last.pt")
    assert param_count(model) == param_count(create_model("essnet", num_classes=3, layer="DG2"))
    w = model.encoder[2].dw1.weight
    assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
    # best.pt is written plain (no masks) and rebuilds by itself.
    best = load_checkpoint(result.run_dir / "best.pt")
    assert not any("weight_orig" in k or "parametrizations" in k for k in best["state_dict"])
    m2, _ = load_model(result.run_dir / "best.pt")
    with torch.inference_mode():
        assert m2(torch.randn(1, 3, 32, 48)).shape == (1, 3, 32, 48)


def test_resume_under_compression(tmp_path: Path, data: Path) -> None:
    cfg = _cfg(tmp_path, data, "compress.groups=2", "train.epochs=2")
    train(cfg)
    cfg3 = _cfg(tmp_path, data, "compress.groups=2", "train.epochs=3")
    res = train(cfg3, resume=True)
    assert res.epochs_done == 3  # the third epoch ran from the masked last.pt


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("compress.sparsity=1.0", "compress.sparsity"),
        ("compress.groups=1", "compress.groups"),
        ("compress.group_schedule=step", "group_schedule"),
        ("compress.nope=1", "unknown key compress.nope"),
    ],
)
def test_bad_compress_config(tmp_path: Path, data: Path, override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _cfg(tmp_path, data, override).validate()
