"""Shipped weights: resolved by name everywhere a checkpoint is accepted, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import edgeseg.pretrained as pretrained
from edgeseg.cli import main
from edgeseg.engine.checkpoint import load_checkpoint, resolve_checkpoint
from edgeseg.errors import CheckpointError


@pytest.fixture
def fake_weights(tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Pretend the tiny run's checkpoint is the packaged segfast_camvid file."""
    _, run = tiny_run
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    shutil.copy(run / "best.pt", tmp_path / "segfast_camvid.pt")
    return tmp_path / "segfast_camvid.pt"


def test_name_resolves_to_packaged_file(fake_weights: Path) -> None:
    assert resolve_checkpoint("segfast_camvid") == fake_weights
    assert "segfast_camvid" in pretrained.list_pretrained()
    assert load_checkpoint("segfast_camvid")["path"] == str(fake_weights)


def test_unknown_or_missing_weights_are_clear_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="not in this installation"):
        resolve_checkpoint("erfnet_camvid")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        resolve_checkpoint("segfast_kitti")


def test_predict_with_model_name(
    fake_weights: Path, tiny_run: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    data, _ = tiny_run
    images = sorted((data / "test").glob("*.png"))[:2]
    out = tmp_path / "pred"
    code = main(["predict", "--model", "segfast_camvid", *map(str, images), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "segmented 2 image(s)" in capsys.readouterr().out
    assert len(list((out / "labels").glob("*.png"))) == 2
    assert main(["predict", str(images[0])]) == 2  # no checkpoint, no --model
    assert "--model NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(pretrained.PRETRAINED))
def test_shipped_weights_are_small_and_carry_their_card_figures(name: str) -> None:
    if name not in pretrained.list_pretrained():
        pytest.skip(f"{name} is not in this installation")
    path = pretrained.pretrained_path(name)
    assert path.stat().st_size <= 10 * 2**20
    ckpt = load_checkpoint(name)
    assert ckpt["model"]["name"] == pretrained.PRETRAINED[name].model
    assert pretrained.PRETRAINED[name].storage in ("float", "int8")
    assert ckpt["dataset"]["name"] == "camvid" and "train_state" not in ckpt
    assert 0 < ckpt["metrics"]["miou"] <= 1 and len(ckpt["metrics"]["iou"]) == 11


CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


@pytest.mark.skipif(not (CAMVID / "val.txt").is_file(), reason=f"no CamVid at {CAMVID}")
@pytest.mark.slow
def test_best_shipped_weights_reach_their_card_mIoU_on_camvid_val() -> None:
    """The model card's figure is what the shipped file gives on CamVid val at 360x480."""
    from edgeseg.engine.evaluate import evaluate

    names = pretrained.list_pretrained()
    if not names:
        pytest.skip("no shipped weights in this installation")
    best = max(names, key=lambda n: load_checkpoint(n)["metrics"]["miou"])
    card = load_checkpoint(best)["metrics"]
    got = evaluate(best, CAMVID, "val", input_size=(360, 480), threads=2)
    assert got["num_images"] == 101
    assert got["miou"] == pytest.approx(card["miou"], abs=2e-3)


@pytest.mark.slow
def test_bench_takes_shipped_weights_by_name(fake_weights: Path) -> None:
    from edgeseg.measure.bench import bench

    res = bench(
        "segfast_camvid", size=(32, 48), backends=["eager"], iterations=1, warmup=1, repeats=1
    )
    assert res["kind"] == "checkpoint" and res["best"] == "eager"
