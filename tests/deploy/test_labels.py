"""Label maps out of the graph (edgeseg.deploy.labels): shapes, equality with the logits'
arg-max, the low-resolution form, int8 files, and every consumer (runtime, Segmenter,
bench's scoring, export's parity)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgeseg_runtime import Segmenter
from edgeseg_runtime.backends import ort_session

from edgeseg.cli import main
from edgeseg.deploy.export import export_onnx
from edgeseg.deploy.labels import labels_file
from edgeseg.errors import EdgesegError
from edgeseg.models import create_model

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None


def _run(path: Path, x: torch.Tensor) -> np.ndarray:
    return ort_session(path, 1).run(None, {"image": x.numpy()})[0]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("segfast", num_classes=5).eval()
    d = tmp_path_factory.mktemp("labels")
    for kind in ("logits", "labels", "labels-low", "labels-half", "labels-quarter"):
        export_onnx(model, d / f"{kind}.onnx", input_size=(64, 96), output=kind)
    return model, d


@pytest.mark.parametrize("size", [(64, 96), (50, 77)])  # any size: the graph stays dynamic
def test_label_outputs_are_uint8_maps_at_the_input_size(net, size) -> None:
    model, d = net
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        ref = model(x).argmax(1).numpy()
    full, low = _run(d / "labels.onnx", x), _run(d / "labels-low.onnx", x)
    assert full.shape == low.shape == (2, *size) and full.dtype == low.dtype == np.uint8
    np.testing.assert_array_equal(full, ref)  # the same arg-max, computed in the graph
    assert (low == ref).mean() > 0.5  # taken before the upsampling: only edges differ
    for kind in ("labels-half", "labels-quarter"):
        reduced = _run(d / f"{kind}.onnx", x)
        assert reduced.shape == (2, *size) and reduced.dtype == np.uint8
        assert (reduced == ref).mean() > 0.5


def test_reduced_labels_resize_bilinearly_to_a_fraction_of_the_output(net) -> None:
    _, d = net
    proto = onnx.load(str(d / "labels-half.onnx"))
    resize = [n for n in proto.graph.node if n.op_type == "Resize"][-2:]
    modes = [next(a.s for a in n.attribute if a.name == "mode") for n in resize]
    assert modes == [b"linear", b"nearest"]  # logits to 1/2 of the output, then the labels
    assert resize[0].input[3] == "es_reduced" and resize[1].input[0] == "es_low"


class _ScaledHead(torch.nn.Module):
    """A head upsampled by a scale factor (the ONNX Resize then has scales, not sizes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (N, 4, H/4, W/4)
        return torch.nn.functional.interpolate(y, scale_factor=4.0, mode="bilinear")


def test_reduced_labels_of_a_resize_given_scales(tmp_path) -> None:
    torch.manual_seed(0)
    model = _ScaledHead().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = model(x).argmax(1).numpy()
    for kind in ("labels-low", "labels-half", "labels-quarter"):
        export_onnx(model, tmp_path / f"{kind}.onnx", input_size=(64, 96), output=kind)
        y = _run(tmp_path / f"{kind}.onnx", x)
        assert y.shape == (1, 64, 96) and (y == ref).mean() > 0.6


def test_low_resolution_labels_drop_the_full_size_resize(net) -> None:
    _, d = net
    ops = [n.op_type for n in onnx.load(str(d / "labels-low.onnx")).graph.node]
    logits_ops = [n.op_type for n in onnx.load(str(d / "logits.onnx")).graph.node]
    assert ops.count("Resize") == logits_ops.count("Resize")  # the float one became nearest
    resize = [n for n in onnx.load(str(d / "labels-low.onnx")).graph.node if n.op_type == "Resize"]
    modes = [a.s for n in resize for a in n.attribute if a.name == "mode"]
    assert b"nearest" in modes


def test_a_network_without_a_final_resize_takes_full_resolution_labels(tmp_path) -> None:
    model = create_model("erfnet", num_classes=4).eval()  # ends in a transposed conv
    export_onnx(model, tmp_path / "e.onnx", input_size=(32, 48), output="labels-low")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "e.onnx")).metadata_props}
    assert meta["edgeseg.output"].startswith("labels ")
    x = torch.randn(1, 3, 32, 48)
    with torch.inference_mode():
        np.testing.assert_array_equal(_run(tmp_path / "e.onnx", x), model(x).argmax(1).numpy())


def test_an_unknown_output_is_refused(tmp_path) -> None:
    model = create_model("fastscnn", num_classes=3).eval()
    with pytest.raises(EdgesegError, match="--output 'probs'"):
        export_onnx(model, tmp_path / "x.onnx", input_size=(32, 48), output="probs")
    assert not (tmp_path / "x.onnx").exists()


def test_runtime_segmenter_reads_labels_and_refuses_logits(net, tmp_path) -> None:
    from edgeseg_runtime.card import ModelCard

    _, d = net
    card = ModelCard.from_flags([f"c{i}" for i in range(5)])
    for kind in ("logits", "labels"):  # files without edgeseg metadata: the card is given
        proto = onnx.load(str(d / f"{kind}.onnx"))
        del proto.metadata_props[:]
        onnx.save(proto, str(tmp_path / f"{kind}.onnx"))
    d = tmp_path
    rgb = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    by_logits = Segmenter(d / "logits.onnx", card=card)(rgb)
    seg = Segmenter(d / "labels.onnx", card=card)
    np.testing.assert_array_equal(seg(rgb), by_logits)
    with pytest.raises(EdgesegError, match="outputs class labels"):
        seg.logits(rgb)
    if HAVE_OPENVINO:
        ov = Segmenter(d / "labels.onnx", card=card, backend="openvino")(rgb)
        assert (ov == by_logits).mean() > 0.99


def test_export_labels_from_a_checkpoint_fp32_and_int8(tiny_run, tmp_path, capsys) -> None:
    data, run = tiny_run
    out = tmp_path / "m.onnx"
    args = ["export", str(run), "--out", str(out), "--output", "labels", "--data", str(data)]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["output"] == "labels" and rec["max_abs_diff"] is None
    assert rec["pixel_agreement"] == 1.0
    int8 = tmp_path / "q.onnx"
    fmt = ["--format", "onnx-int8", "--output", "labels-low", "--data", str(data)]
    assert main(["export", str(run), "--out", str(int8), *fmt]) == 0
    assert "output labels" in capsys.readouterr().out
    assert ort_session(int8).get_outputs()[0].type == "tensor(uint8)"


def test_labels_file_rewrites_in_place(net, tmp_path) -> None:
    _, d = net
    f = tmp_path / "m.onnx"
    f.write_bytes((d / "logits.onnx").read_bytes())
    assert labels_file(f, "labels-low") == "labels-low"
    assert ort_session(f).get_outputs()[0].name == "labels"
