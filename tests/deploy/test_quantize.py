"""The graph edits around ONNX Runtime's quantizer: exact, and each where it should apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeseg.deploy import onnx_passes as P
from edgeseg.deploy import quantize as Q
from edgeseg.deploy.export import export_onnx

pytestmark = pytest.mark.filterwarnings("ignore")


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


class _Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1)
        self.pool = nn.AvgPool2d(2)  # SegFast's
        self.padded = nn.AvgPool2d(3, 2, padding=1)  # overlapping, padded: kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.padded(self.pool(torch.relu(self.conv(x)))))


def test_average_pools_become_exact_depthwise_convs(tmp_path: Path) -> None:
    import onnx
    from onnx import shape_inference

    torch.manual_seed(0)
    export_onnx(_Pools().eval(), tmp_path / "fp32.onnx", input_size=(16, 20))
    proto = shape_inference.infer_shapes(onnx.load(str(tmp_path / "fp32.onnx")))
    assert P.pools_as_depthwise_convs(proto) == 1
    onnx.save(proto, str(tmp_path / "conv.onnx"))
    assert _ops(tmp_path / "conv.onnx").count("AveragePool") == 1  # the padded one
    x = torch.randn(1, 3, 16, 20).numpy()
    a, b = _run(tmp_path / "fp32.onnx", x), _run(tmp_path / "conv.onnx", x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_int8_model_has_no_average_pool_of_stride_k(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Pools().eval()
    calib = [torch.randn(3, 16, 20) for _ in range(4)]
    Q.quantize_model_onnx(model, tmp_path / "q.onnx", calib, (16, 20))
    ops = _ops(tmp_path / "q.onnx")
    assert ops.count("AveragePool") == 1 and ops.count("Conv") == 3
    x = calib[0][None]
    with torch.no_grad():
        ref = model(x).numpy()
    out = _run(tmp_path / "q.onnx", x.numpy())
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


class _Fire(nn.Module):
    """Squeeze -> (1x1 expand, 3x3 expand) -> concat, as Squeeze U-Net's fire modules."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(3, 8, 1)
        self.e1, self.e3 = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return self.head(torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1))


def test_concat_inputs_are_quantized_to_the_concat_scale(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = _Fire().eval()
    calib = [torch.randn(3, 12, 12) for _ in range(4)]
    Q.quantize_model_onnx(model, tmp_path / "q.onnx", calib, (12, 12))
    g = onnx.load(str(tmp_path / "q.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    cat = next(n for n in g.node if n.op_type == "Concat")
    q_out = next(n for n in g.node if cat.output[0] in n.input)

    def params(node: onnx.NodeProto) -> tuple[float, int]:
        return float(inits[node.input[1]]), int(inits[node.input[2]])

    for name in cat.input:  # ORT's int8 concat then copies instead of re-quantizing
        dq = producer[name]
        assert params(dq) == params(producer[dq.input[0]]) == params(q_out)
    # one rounding instead of two: at least as close to fp32 as the file without the edit
    x = calib[0][None]
    with torch.no_grad():
        ref = model(x).numpy()
    shared = _run(tmp_path / "q.onnx", x.numpy())
    assert np.abs(shared - ref).max() < 0.05 * np.abs(ref).max()


def test_concat_scale_is_not_shared_where_a_relu_would_be_lost() -> None:
    # Zero point 0 on a ReLU'd input stands for the ReLU the quantizer removed; a concat
    # scale with another zero point would let negative values through.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def graph(zp_in: int, zp_out: int, extra_reader: bool = False) -> onnx.ModelProto:
        inits = [
            numpy_helper.from_array(np.array(0.5, np.float32), "s_in"),
            numpy_helper.from_array(np.array(zp_in, np.uint8), "zp_in"),
            numpy_helper.from_array(np.array(0.25, np.float32), "s_out"),
            numpy_helper.from_array(np.array(zp_out, np.uint8), "zp_out"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["a", "s_in", "zp_in"], ["aq"]),
            helper.make_node("DequantizeLinear", ["aq", "s_in", "zp_in"], ["ad"]),
            helper.make_node("Concat", ["ad", "b"], ["c"], axis=1),
            helper.make_node("QuantizeLinear", ["c", "s_out", "zp_out"], ["cq"]),
            helper.make_node("DequantizeLinear", ["cq", "s_out", "zp_out"], ["y"]),
        ]
        if extra_reader:
            nodes.append(helper.make_node("Relu", ["ad"], ["z"]))
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abyz"]
        outputs = [io[2], io[3]] if extra_reader else [io[2]]
        return helper.make_model(helper.make_graph(nodes, "g", io[:2], outputs, inits))

    for zp_in, zp_out in ((0, 0), (3, 7)):
        m = graph(zp_in, zp_out)
        assert P.concat_inputs_share_scale(m) == 1
        assert list(m.graph.node[0].input[1:]) == ["s_out", "zp_out"]
    assert P.concat_inputs_share_scale(graph(0, 7)) == 0
    assert P.concat_inputs_share_scale(graph(3, 7, extra_reader=True)) == 0


def test_depthwise_weights_keep_8_bits_when_others_get_7(tmp_path: Path) -> None:
    # ORT's int8 depthwise kernel widens to int16 before multiplying: no saturation, so
    # reduce_range (needed by its u8s8 GEMM without VNNI) is not applied to it.
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8)
    ).eval()
    export_onnx(model, tmp_path / "fp32.onnx", input_size=(12, 12))
    calib = [torch.randn(3, 12, 12) for _ in range(2)]
    Q.quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "q.onnx", calib, reduce_range=True)
    proto = onnx.load(str(tmp_path / "q.onnx"))
    weights = {
        tuple(t.dims): np.abs(numpy_helper.to_array(t).astype(np.int32)).max()
        for t in proto.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
    }
    assert weights[(8, 3, 3, 3)] <= 64  # dense: 7 bits
    assert weights[(8, 1, 3, 3)] == 127  # depthwise: 8 bits
    precision = {p.key: p.value for p in proto.metadata_props}["edgeseg.precision"]
    assert "8-bit depthwise" in precision


@pytest.mark.slow
def test_max_pool_of_the_input_stays_fp32(tmp_path: Path) -> None:
    # ERFNet's first downsampler pools the NCHW input, where ORT's uint8 max-pool is a
    # scalar loop (13x slower than fp32); the max-pools inside the network stay int8.
    import onnx
    import onnxruntime as ort

    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("erfnet", num_classes=3).eval()
    calib = [torch.randn(3, 32, 48) for _ in range(2)]
    Q.quantize_model_onnx(model, tmp_path / "q.onnx", calib, (32, 48))
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")  # the graph ORT runs
    ort.InferenceSession(str(tmp_path / "q.onnx"), opts, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "opt.onnx")).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    pools = [n for n in g.node if "MaxPool" in n.op_type]
    assert len(pools) == 3
    fp32 = [p for p in pools if producer.get(p.input[0]) == "DequantizeLinear"]
    assert len(fp32) == 1 and fp32[0].op_type == "MaxPool"  # the input's, NCHW fp32


def test_concat_scale_is_shared_along_copy_chains_and_inner_concats() -> None:
    # A decoder's upsampled branch: phase convs -> inner concat -> move/crop -> skip
    # concat. Every quantize/dequantize pair on the way takes the outer concat's scale,
    # so ORT's int8 concats copy; the skip, read elsewhere too, keeps its own.
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def qdq(src: str, tag: str, scale: float) -> str:
        inits.append(numpy_helper.from_array(np.array(scale, np.float32), f"s_{tag}"))
        inits.append(numpy_helper.from_array(np.array(0, np.uint8), f"z_{tag}"))
        nodes.append(helper.make_node("QuantizeLinear", [src, f"s_{tag}", f"z_{tag}"], [tag]))
        nodes.append(
            helper.make_node("DequantizeLinear", [tag, f"s_{tag}", f"z_{tag}"], [f"{tag}_f"])
        )
        return f"{tag}_f"

    p0, p1 = qdq("a", "p0", 0.1), qdq("b", "p1", 0.2)
    nodes.append(helper.make_node("Concat", [p0, p1], ["inner"], axis=1))
    moved = qdq("inner", "inner_q", 0.2)
    nodes.append(helper.make_node("Transpose", [moved], ["t"], perm=[0, 1, 3, 2]))
    pads = np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)
    inits.append(numpy_helper.from_array(pads, "pads"))
    nodes.append(helper.make_node("Pad", [qdq("t", "t_q", 0.2), "pads"], ["padded"]))  # 0
    up = qdq("padded", "pad_q", 0.2)
    skip = qdq("skip", "skip_q", 0.05)
    nodes.append(helper.make_node("Relu", [skip], ["elsewhere"]))
    nodes.append(helper.make_node("Concat", [up, skip], ["outer"], axis=1))
    qdq("outer", "out_q", 0.3)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "ab"]
    io.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT, None))
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("out_q_f", "elsewhere")
    ]
    m = helper.make_model(helper.make_graph(nodes, "g", io, outs, inits))
    assert P.concat_inputs_share_scale(m) == 3  # two phases, then the upsampled branch
    scales = {n.output[0]: n.input[1] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    chain = ("p0", "p1", "inner_q", "t_q", "pad_q", "out_q")
    assert {scales[t] for t in chain} == {"s_out_q"}
    assert scales["skip_q"] == "s_skip_q"


@pytest.mark.slow
def test_segfast_basic_concats_copy_all_but_their_skip(tmp_path: Path) -> None:
    import onnx

    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("segfast_basic", num_classes=3, width=16).eval()
    calib = [torch.randn(3, 32, 48) for _ in range(2)]
    Q.quantize_model_onnx(model, tmp_path / "q.onnx", calib, (32, 48))
    g = onnx.load(str(tmp_path / "q.onnx")).graph
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    cats = [
        n
        for n in g.node
        if n.op_type == "Concat" and producer.get(n.input[0], n).op_type == "DequantizeLinear"
    ]
    assert len(cats) == 3 * 2 + 3 + 3 + 3  # fire modules, phases, skips
    for cat in cats:
        scale = readers[cat.output[0]][0].input[1]
        other = [i for i in cat.input if producer[i].input[1] != scale]
        assert len(other) <= 1, cat.name  # at most the skip, which the encoder reads too


@pytest.mark.slow
def test_the_tail_after_the_last_conv_runs_in_fp32(tmp_path: Path) -> None:
    # ERFNet's classifier is a transposed conv (no int8 kernel in ORT) and SegFast's
    # logits are upsampled bilinearly: both, and the crop after, stay fp32, so the
    # logits are not rounded to 8 bits.
    import onnx

    from edgeseg.models import create_model

    for name, tail in (("erfnet", "ConvTranspose"), ("segfast", "Resize")):
        torch.manual_seed(0)
        model = create_model(name, num_classes=3).eval()
        calib = [torch.randn(3, 32, 48) for _ in range(2)]
        Q.quantize_model_onnx(model, tmp_path / f"{name}.onnx", calib, (32, 48))
        g = onnx.load(str(tmp_path / f"{name}.onnx")).graph
        producer = {o: n for n in g.node for o in n.output}
        node, seen = producer[g.output[0].name], []
        while node.op_type != "DequantizeLinear":
            seen.append(node.op_type)
            node = producer[node.input[0]]
        assert seen == ["Slice", tail], (name, seen)
        weights = {t.name for t in g.initializer}
        if tail == "ConvTranspose":  # fp32 weights, not a dequantized int8 copy
            deconv = next(n for n in g.node if n.op_type == "ConvTranspose")
            assert deconv.input[1] in weights
