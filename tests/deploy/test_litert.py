"""LiteRT export and the litert backends (edgeseg.deploy.litert, edgeseg_runtime.litert).

Needs the ``litert`` extra (litert-torch, ai-edge-litert): ``.ci/litert-venv`` runs this
module in an environment that has it; elsewhere it is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from edgeseg_runtime import Segmenter
from edgeseg_runtime.litert import tflite_props

from edgeseg.cli import main
from edgeseg.deploy.backends import make_runner
from edgeseg.deploy.litert import export_litert
from edgeseg.errors import EdgesegError
from edgeseg.models import create_model

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.litert]


@pytest.mark.parametrize("name", ["segfast", "erfnet"])  # transposed convs: sub-pixel first
def test_fp32_file_matches_pytorch_and_carries_its_card(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4).eval()
    meta = {
        "classes": ["a", "b", "c", "d"],
        "palette": [[0, 0, 0]] * 4,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "layout": "NCHW",
    }
    out = export_litert(model, tmp_path / "m.tflite", input_size=(64, 96), metadata=meta)
    assert out["precision"] == "fp32"
    props = tflite_props(tmp_path / "m.tflite")
    assert json.loads(props["edgeseg.classes"]) == ["a", "b", "c", "d"]
    run = make_runner("litert", litert_path=tmp_path / "m.tflite")
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(run(x), model(x), rtol=1e-3, atol=1e-3)
    seg = Segmenter(tmp_path / "m.tflite")  # the card from the file, litert by default
    rgb = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    assert seg(rgb).shape == (64, 96) and seg.classes == ("a", "b", "c", "d")


def test_int8_file_is_calibrated_and_agrees(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("squeeze_unet", num_classes=3).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(3, 64, 96, generator=g) for _ in range(4)]
    out = export_litert(model, tmp_path / "q.tflite", input_size=(64, 96), calibration=calib)
    assert out["precision"] == "int8"
    assert tflite_props(tmp_path / "q.tflite")["edgeseg.precision"] == "int8"
    fp32 = tmp_path / "f.tflite"
    export_litert(model, fp32, input_size=(64, 96))
    assert (tmp_path / "q.tflite").stat().st_size < fp32.stat().st_size / 2
    run = make_runner("litert-int8", litert_path=tmp_path / "q.tflite")
    with torch.inference_mode():
        agree = (run(calib[0][None]).argmax(1) == model(calib[0][None]).argmax(1)).float()
    assert agree.mean() > 0.8


def test_a_network_the_int8_converter_refuses_is_one_line(tmp_path: Path) -> None:
    """SegFast's depthwise upsamplers become 2x1 depthwise phase convs, which the
    converter's layout pass cannot take once quantized: a one-line error, no file."""
    model = create_model("segfast", num_classes=3).eval()
    calib = [torch.randn(3, 64, 96) for _ in range(2)]
    with pytest.raises(EdgesegError, match="LiteRT conversion failed"):
        export_litert(model, tmp_path / "q.tflite", input_size=(64, 96), calibration=calib)
    assert not (tmp_path / "q.tflite").exists()


def test_a_wrong_size_or_engine_is_one_line(tmp_path: Path) -> None:
    model = create_model("segfast", num_classes=3).eval()
    export_litert(model, tmp_path / "m.tflite", input_size=(32, 48))
    run = make_runner("litert", litert_path=tmp_path / "m.tflite")
    with pytest.raises(EdgesegError, match="runs at"):
        run(torch.randn(1, 3, 40, 48))
    from edgeseg_runtime.backends import make_runner as engine

    with pytest.raises(EdgesegError, match="litert backend"):
        engine("ort", tmp_path / "m.tflite")


def test_export_cli_and_bench_backends(tiny_run, tmp_path: Path, capsys) -> None:
    data, run = tiny_run
    out = tmp_path / "m.tflite"
    args = ["export", str(run), "--format", "litert", "--out", str(out), "--data", str(data)]
    assert main(args) == 0
    assert "fp32 LiteRT" in capsys.readouterr().out
    assert main(["export", str(run), "--format", "litert", "--out", str(tmp_path / "m.onnx")]) == 2
    assert (
        main(
            [
                "bench",
                str(run),
                "--backends",
                "eager,litert,litert-int8",
                "--data",
                str(data),
                "--repeats",
                "1",
                "--iterations",
                "2",
                "--no-peak",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "b.json").read_text())
    assert {"litert", "litert-int8"} <= set(res["backends"])
    assert res["backends"]["litert"]["pixel_agreement"] > 0.99
    assert res["backends"]["litert-int8"]["precision"] == "int8"
