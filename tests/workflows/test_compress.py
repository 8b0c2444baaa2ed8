"""edgeseg compress: each method end to end on a tiny run, and its bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.config import load_config
from edgeseg.engine.checkpoint import load_model
from edgeseg.engine.train import train
from edgeseg.workflows.compress import compress_checkpoint
from tests.synthetic import make_list_dataset


@pytest.fixture(scope="module")
def essnet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch ESSNet (layer D) run on synthetic data: groupable and prunable."""
    base = tmp_path_factory.mktemp("cmp")
    data = make_list_dataset(base / "data", {"train": 4, "val": 2}, size=(32, 48))
    run = base / "run"
    cfg = load_config(
        None,
        [
            f"data.root={data}",
            "data.preset=custom",
            "data.classes=[a, b, c]",
            "data.crop_size=32x48",
            f"train.out={run}",
            "train.epochs=1",
            "train.batch_size=2",
            "train.progress=false",
            "train.tensorboard=false",
            "model.name=essnet",
        ],
    )
    train(cfg)
    return data, run


@pytest.mark.parametrize("method", ["prune", "sparsify", "group"])
@pytest.mark.slow
def test_compress_methods(
    essnet_run: tuple[Path, Path], tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    data, run = essnet_run
    rep = compress_checkpoint(
        run,
        method,
        tmp_path / method,
        data=str(data),
        epochs=1,
        size=(32, 48),
        backends=("channels_last",),
        overrides=["train.batch_size=2", "train.progress=false", "train.tensorboard=false"],
    )
    b, a = rep["before"], rep["after"]
    assert "of training left" in caplog.text  # the fine-tune's plan, before the long part
    assert (tmp_path / method / "report.json").is_file()
    _model, ckpt = load_model(tmp_path / method / "compressed.pt")  # loads as a plain model
    assert a["miou"] is not None and b["miou"] is not None and "best_ms" in a
    if method == "prune":
        assert a["params"] < 0.7 * b["params"] and a["macs"] < b["macs"]
        assert ckpt["model"]["pruned"] is True
    elif method == "sparsify":
        assert a["sparsity"] > 0.5 and a["zip_bytes"] < b["zip_bytes"]
        assert "int8_onnx_zip_bytes" in a
    else:
        assert ckpt["model"]["kwargs"]["layer"] == "DG2" and a["params"] < b["params"]


def test_compress_bad_input_one_line_exit_2(
    essnet_run: tuple[Path, Path], tiny_run: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    data, run = essnet_run
    _, squeeze_run = tiny_run
    cases = [
        ([str(run), "--method", "shrink"], "--method: invalid choice: 'shrink'"),
        ([str(run), "--method", "sparsify", "--sparsity", "1.2", "--epochs", "1"], "[0, 1)"),
        ([str(run), "--method", "prune", "--ratio", "1"], "[0, 1)"),
        ([str(squeeze_run), "--method", "group", "--epochs", "1"], "Conv-module"),
        ([str(run), "--method", "group", "--groups", "3", "--epochs", "1"], "divide"),
    ]
    for argv, msg in cases:
        code = main(["compress", *argv, "--out", str(tmp_path / "o"), "--data", str(data)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and msg in err and len(err.splitlines()) == 1, err


def test_compress_report_is_typed_versioned_and_prints_its_table() -> None:
    from edgeseg.errors import EdgesegError
    from edgeseg.workflows.compress import COMPRESS_SCHEMA, CompressReport

    side = {"params": 1000, "macs": 2e9, "sparsity": 0.5, "file_bytes": 4e6, "zip_bytes": 2e6}
    old = {
        "method": "prune",
        "model": "l3unet",
        "source": "run/best.pt",
        "before": {**side, "miou": 0.6},
        "after": {**side, "params": 500, "best_ms": 3.0, "best_backend": "ort"},
        "ratios": {"params": 0.5},
    }
    rep = CompressReport.from_dict(old)
    assert rep["schema"] == COMPRESS_SCHEMA and rep.to_dict() == {**old, "schema": COMPRESS_SCHEMA}
    lines = rep.table().splitlines()
    assert lines[0] == "prune l3unet (run/best.pt)" and lines[-1] == "params 0.500"
    after = next(line for line in lines if line.startswith("after"))
    assert after.split()[:3] == ["after", "500", "2.00"] and "3.0 (ort)" in after
    with pytest.raises(EdgesegError, match="schema"):
        CompressReport.from_dict({**old, "schema": "edgeseg.compress/9"})
