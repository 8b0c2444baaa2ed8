"""ONNX export of checkpoints: metadata, parity on real images, errors."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from edgeseg.cli import main
from edgeseg.deploy.export import export_onnx, onnx_metadata, onnx_session
from edgeseg.errors import EdgesegError
from edgeseg.workflows.export import export_checkpoint
from tests.cli_checks import assert_one_line_exit_2

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.slow
def test_export_checkpoint_metadata_and_parity(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = tiny_run
    out = tmp_path / "model.onnx"
    res = export_checkpoint(run, out, data=str(data), split="val", check_images=3)
    assert res.check_source == "data" and res.check_images == 3
    assert res.max_abs_diff < 1e-3
    assert res.pixel_agreement > 0.999
    assert res.size_bytes == out.stat().st_size
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind
    meta = onnx_metadata(out)
    assert meta["classes"] == ["a", "b", "c"]
    assert meta["model"]["name"] == "squeeze_unet"
    assert len(meta["mean"]) == 3 and len(meta["palette"]) == 3
    # One self-contained file: no external weight files next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    import onnx

    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # N, H, W symbolic


@pytest.mark.slow
def test_cli_export(tiny_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    _, run = tiny_run
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--out", str(out), "--json", "--size", "40x56"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["path"] == str(out) and res["check_source"] == "random"
    assert res["pixel_agreement"] > 0.999


def test_export_any_module_and_bad_opset(tmp_path: Path) -> None:
    from edgeseg.models import create_model

    model = create_model("l3unet", num_classes=2)
    with pytest.raises(EdgesegError, match="opset"):
        export_onnx(model, tmp_path / "x.onnx", opset=13)
    old = os.umask(0o022)
    try:
        assert export_onnx(model, tmp_path / "x.onnx", input_size=(32, 32)) in {
            "dynamo",
            "torchscript",
        }
    finally:
        os.umask(old)
    # as a plain open() would have made it, not the temporary file's private 0600
    assert stat.S_IMODE((tmp_path / "x.onnx").stat().st_mode) == 0o644
    s = onnx_session(tmp_path / "x.onnx")
    y = s.run(None, {"image": torch.randn(1, 3, 50, 70).numpy()})[0]
    assert y.shape == (1, 2, 50, 70)


def test_l3unet_exports_its_fold_as_a_strided_conv_and_unfold_channels_last(
    tmp_path: Path,
) -> None:
    import onnx

    from edgeseg.models import create_model

    model = create_model("l3unet", num_classes=3).eval()
    export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64))
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    perms = [list(n.attribute[0].ints) for n in graph.node if n.op_type == "Transpose"]
    # no 6-D fold permute; the unfold is NHWC -> swap (w, i) -> NCHW
    assert perms == [[0, 2, 3, 1], [0, 1, 3, 2, 4], [0, 3, 1, 2]], perms
    x = torch.randn(1, 3, 50, 70)
    session = onnx_session(tmp_path / "m.onnx")
    y = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["segfast", "erfnet"])
def test_depthwise_transposed_convs_export_as_phase_convs(name: str, tmp_path: Path) -> None:
    # SegFast's depthwise upsamplers become phase convs (exact); ERFNet's dense ones stay.
    import onnx

    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=4).eval()
    export_onnx(model, tmp_path / "m.onnx", input_size=(48, 64))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert ("ConvTranspose" in ops) == (name == "erfnet")
    x = torch.randn(2, 3, 50, 70)  # any size
    session = onnx_session(tmp_path / "m.onnx")
    y = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), rtol=1e-4, atol=1e-4)


def test_corrupt_and_foreign_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf at all \x00\x01")
    with pytest.raises(EdgesegError, match=r"bad\.onnx"):
        onnx_session(bad)
    with pytest.raises(EdgesegError, match=r"bad\.onnx"):
        onnx_metadata(bad)
    # A valid ONNX model that edgeseg did not write has no edgeseg metadata.
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(EdgesegError, match="not one exported by edgeseg"):
        onnx_metadata(foreign)
    with pytest.raises(EdgesegError, match="not found"):
        onnx_session(tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", "nowhere.pt", "--out", "x.onnx"], "checkpoint not found"),
        (["export", "x.pt", "--out", "x.onnx", "--format", "tflite"], "invalid choice"),
        (["export", "x.pt"], "--out"),
    ],
)
def test_cli_export_bad_input(argv: list[str], needle: str, capsys, tmp_path: Path) -> None:
    assert_one_line_exit_2(argv, needle, capsys)


@pytest.mark.slow
def test_cli_export_int8(tiny_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, run = tiny_run
    out = tmp_path / "m.int8.onnx"
    argv = ["export", str(run), "--format", "onnx-int8", "--out", str(out), "--data", str(data)]
    assert main([*argv, "--calib-images", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["precision"] == "int8" and res["size_bytes"] < res["fp32_size_bytes"]
    assert res["quantization"]["quantized_layers"] > 0
    assert onnx_metadata(out)["precision"].startswith("int8")
    # Without calibration data: a one-line error, and nothing written.
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(["export", str(run), "--format", "onnx-int8", "--out", str(tmp_path / "x")]))
    assert exc.value.code == 2
    assert "calibration data missing" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_crop_exports_as_one_slice(tmp_path: Path) -> None:
    # y[:, :, :h, :w] is two Slices in the export, each copying the whole logits tensor.
    import onnx

    from edgeseg.models import create_model

    model = create_model("erfnet", num_classes=3).eval()
    export_onnx(model, tmp_path / "m.onnx", input_size=(32, 48))
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    last = producer[graph.output[0].name]
    assert last.op_type == "Slice" and producer[last.input[0]].op_type == "ConvTranspose"
    x = torch.randn(1, 3, 37, 53)
    session = onnx_session(tmp_path / "m.onnx")
    y = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), rtol=1e-4, atol=1e-4)


def test_merge_slices_only_on_disjoint_axes() -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.deploy.onnx_passes import merge_slices

    def graph(axes2: int) -> onnx.ModelProto:
        c = {"zero": [0], "ax1": [2], "ax2": [axes2], "end2": [3], "one": [1]}
        inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in c.items()]
        nodes = [
            helper.make_node("Shape", ["x"], ["end1"], start=3, end=4),  # computed: Concat
            helper.make_node("Slice", ["x", "zero", "end1", "ax1", "one"], ["a"]),
            helper.make_node("Slice", ["a", "zero", "end2", "ax2", "one"], ["y"]),
        ]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        return helper.make_model(
            helper.make_graph(nodes, "g", [x], [y], inits),
            opset_imports=[helper.make_opsetid("", 18)],
        )

    x = np.random.default_rng(0).standard_normal((1, 2, 5, 4)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"x": x})[0]

    m = graph(axes2=3)
    ref = run(m)
    assert merge_slices(m) == 1
    assert [n.op_type for n in m.graph.node].count("Slice") == 1
    np.testing.assert_array_equal(run(m), ref)
    assert merge_slices(graph(axes2=2)) == 0  # the same axis twice: left as it is
    assert merge_slices(graph(axes2=-1)) == 0  # negative: could be the same axis
