"""Per-layer profiles inside the engines (edgeseg.measure.layers): every executed node
timed, the operations of the convolutions counted as the graph says, int8 layers named
int8, and the CLI's table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from edgeseg.cli import main
from edgeseg.deploy.export import export_onnx
from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import count_flops
from edgeseg.measure.layers import graph_flops, profile_layers
from edgeseg.models import create_model
from tests.cli_checks import assert_one_line_exit_2

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
SIZE = (48, 64)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    from edgeseg.deploy.quantize import quantize_onnx

    torch.manual_seed(0)
    model = create_model("segfast", num_classes=4).eval()
    d = tmp_path_factory.mktemp("layers")
    export_onnx(model, d / "m.onnx", input_size=SIZE)
    calib = [torch.randn(3, *SIZE) for _ in range(2)]
    quantize_onnx(d / "m.onnx", d / "q.onnx", calib)
    return model, d / "m.onnx", d / "q.onnx"


def test_graph_operations_match_the_networks_count(files) -> None:
    model, fp32, int8 = files
    per_node = graph_flops(fp32, (1, 3, *SIZE))
    with torch.inference_mode():
        whole = count_flops(model, torch.randn(1, 3, *SIZE))
    # Convs and matrix products are nearly all of it (pooling, resizes, adds are not counted).
    assert 0.9 * whole <= sum(per_node.values()) <= whole
    # The int8 file is the same network (its graph rewritten for int8 kernels: within 2 %).
    assert sum(graph_flops(int8, (1, 3, *SIZE)).values()) == pytest.approx(
        sum(per_node.values()), rel=0.02
    )


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_ort_times_every_executed_node(files, which) -> None:
    _, fp32, int8 = files
    prof = profile_layers(
        fp32 if which == "fp32" else int8, "ort", SIZE, threads=1, runs=2, peak=False
    )
    assert prof.layers and all(isinstance(r.ms, float) for r in prof.layers)
    assert abs(sum(r.share for r in prof.layers) - 1) < 1e-6
    counted = sum(r.flops for r in prof.layers)
    assert counted >= 0.8 * sum(graph_flops(fp32, (1, 3, *SIZE)).values())  # fused names kept
    precisions = {r.precision for r in prof.layers if r.flops}
    assert precisions == ({"int8"} if which == "int8" else {"fp32"}) or "int8" in precisions
    assert {g["op"] for g in prof.by_op()} == {r.op for r in prof.layers}


@pytest.mark.skipif(not HAVE_OPENVINO, reason="needs the openvino package (extra)")
def test_openvino_counters_name_the_kernel_and_precision(files) -> None:
    _, _, int8 = files
    prof = profile_layers(int8, "openvino", SIZE, threads=1, runs=2, peak=False)
    convs = [r for r in prof.layers if r.op == "Convolution"]
    assert convs and all(r.kernel and r.flops > 0 for r in convs)
    assert "int8" in {r.precision for r in convs}


def test_cli_prints_the_table_and_names_slow_layers(files, capsys, tmp_path) -> None:
    _, fp32, _ = files
    argv = ["profile", str(fp32), "--size", "48x64", "--threads", "1", "--repeats", "2"]
    assert main([*argv, "--json", str(tmp_path / "p.json")]) == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["engine"] == "ort" and rec["peaks"] and rec["by_op"]
    assert all(r["peak_fraction"] >= 0 for r in rec["layers"] if r["peak_fraction"] is not None)
    assert main(argv) == 0
    assert "| op | kernel | precision |" in capsys.readouterr().out


def test_bad_layer_profile_input(files, capsys, tmp_path) -> None:
    _, fp32, _ = files
    assert_one_line_exit_2(["profile", "segfast", "--engine", "ort"], "only .onnx files", capsys)
    assert_one_line_exit_2(["profile", str(tmp_path / "none.onnx")], "no such ONNX file", capsys)
    with pytest.raises(EdgesegError, match="--engine 'tflite'"):
        profile_layers(fp32, "tflite")
