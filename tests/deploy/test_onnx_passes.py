"""Each ONNX pass on a small hand-built graph: what it rewrites, what it leaves, and that
the outputs do not change."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.deploy import onnx_passes as P

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _model(nodes, inputs, outputs, inits=()):  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def _run(m, **feeds):  # type: ignore[no-untyped-def]
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _f(name: str, shape=None):  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_drop_zero_pad_values_keeps_nonzero_ones() -> None:
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        helper.make_node("Pad", ["x", "pads", "zero"], ["a"]),
        helper.make_node("Pad", ["a", "pads", "two"], ["y"]),
    ]
    m = _model(nodes, [_f("x", [1, 1, 2, 2])], [_f("y")], [pads, zero, two])
    x = np.random.default_rng(0).random((1, 1, 2, 2), np.float32)
    before = _run(m, x=x)[0]
    assert P.drop_zero_pad_values(m) == 1
    assert list(m.graph.node[0].input) == ["x", "pads", ""] and m.graph.node[1].input[2] == "two"
    assert "zero" not in {t.name for t in m.graph.initializer}
    np.testing.assert_array_equal(_run(m, x=x)[0], before)


def _qdq_pad_graph(scale_out: float = 0.1):  # type: ignore[no-untyped-def]
    pads = np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64)
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(scale_out, np.float32), "s2"),
        numpy_helper.from_array(np.array(7, np.uint8), "zp"),
        numpy_helper.from_array(pads, "pads"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        helper.make_node("Pad", ["xd", "pads"], ["p"]),
        helper.make_node("QuantizeLinear", ["p", "s2", "zp"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "s2", "zp"], ["y"]),
    ]
    return _model(nodes, [_f("x", [1, 2, 3, 3])], [_f("y")], inits)


def test_pads_in_uint8_is_bit_exact_and_needs_equal_scales() -> None:
    m = _qdq_pad_graph()
    x = np.random.default_rng(1).normal(size=(1, 2, 3, 3)).astype(np.float32)
    before = _run(m, x=x)[0]
    assert P.pads_in_uint8(m) == 1
    ops = [n.op_type for n in m.graph.node]
    assert ops == ["QuantizeLinear", "Pad", "DequantizeLinear"]
    np.testing.assert_array_equal(_run(m, x=x)[0], before)
    assert P.pads_in_uint8(_qdq_pad_graph(scale_out=0.2)) == 0  # re-scaling: not a copy


def test_shapes_read_the_quantized_tensor() -> None:
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        helper.make_node("Shape", ["xd"], ["y"]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.INT64, None)
    m = _model(nodes, [_f("x", [1, 2, 5, 7])], [out], inits)
    x = np.zeros((1, 2, 5, 7), np.float32)
    assert P.shapes_of_quantized(m) == 1
    assert [n.op_type for n in m.graph.node] == ["QuantizeLinear", "Shape"]
    assert _run(m, x=x)[0].tolist() == [1, 2, 5, 7]


def test_unfolded_batchnorms_read_the_float_tensor() -> None:
    c = 2
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp"),
        *(
            numpy_helper.from_array(np.full(c, v, np.float32), k)
            for k, v in (("g", 1.5), ("b", 0.2), ("mu", 0.1), ("var", 2.0))
        ),
    ]
    nodes = [
        helper.make_node("Concat", ["x", "x"], ["cat"], axis=1),
        helper.make_node("QuantizeLinear", ["cat", "s", "zp"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"]),
        helper.make_node("BatchNormalization", ["cd", "g", "b", "mu", "var"], ["y"]),
    ]
    m = _model(nodes, [_f("x", [1, 1, 3, 3])], [_f("y")], inits)
    x = np.random.default_rng(2).normal(size=(1, 1, 3, 3)).astype(np.float32)
    quantized = _run(m, x=x)[0]
    assert P.norms_read_float(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Concat", "BatchNormalization"]
    exact = (np.concatenate([x, x], 1) - 0.1) / np.sqrt(2.0 + 1e-5) * 1.5 + 0.2
    np.testing.assert_allclose(_run(m, x=x)[0], exact, rtol=1e-5, atol=1e-6)
    assert np.abs(quantized - exact).max() > 1e-3  # the uint8 copy had rounded the input
    assert P.norms_read_float(m) == 0


def test_passes_run_in_their_documented_order_and_report_edits() -> None:
    assert [f.__name__ for f in P.EXPORT_PASSES] == ["merge_slices"]
    assert [f.__name__ for f in P.PRE_INT8_PASSES] == [
        "drop_zero_pad_values",
        "pools_as_depthwise_convs",
    ]
    # Unfolded BatchNorms read fp32 and shapes stop counting as readers before scales are
    # shared; pads move to uint8 last, with the final zero points.
    assert [f.__name__ for f in P.POST_INT8_PASSES] == [
        "norms_read_float",
        "shapes_of_quantized",
        "concat_inputs_share_scale",
        "pads_in_uint8",
    ]
    m = _qdq_pad_graph()
    done = P.run_passes(m, P.POST_INT8_PASSES)
    assert done == {
        "norms_read_float": 0,
        "shapes_of_quantized": 0,
        "concat_inputs_share_scale": 0,
        "pads_in_uint8": 1,
    }
    assert not any(P.run_passes(m, P.POST_INT8_PASSES).values())  # idempotent
