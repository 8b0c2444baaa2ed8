"""Post-training int8 quantization, calibrated on real images, with a check that it happened.

Two routes, both the libraries' own:

- **ONNX Runtime static quantization** (:func:`quantize_onnx`): the fp32 ONNX model goes
  through ORT's pre-processing (symbolic shape inference and graph optimisation), then
  ``quantize_static`` in QDQ format with per-channel int8 weights and uint8 activations,
  calibrated (min-max) on the given images.
- **PyTorch PT2E** (:func:`quantize_pt2e`): ``torch.export`` -> torchao's
  ``prepare_pt2e`` with the X86 Inductor quantizer (per-channel int8 weights, uint8
  activations) -> calibration -> ``convert_pt2e`` -> ``torch.compile`` (Inductor lowers
  the quantize/dequantize patterns to oneDNN int8 kernels).

Both leave some layers in fp32 (``ConvTranspose`` in both, and whatever has no int8
kernel); the :class:`QuantReport` names them. :func:`quantize_model_onnx`, the route
``edgeseg bench`` / ``export --int8`` / ``Segmenter`` take from a PyTorch model, first
rewrites transposed convs as conv + pixel shuffle (:mod:`edgeseg.compress.subpixel`), so
that the decoder's upsampling runs in int8 too. A result with no quantize/dequantize nodes
at all is an error, not a silently fp32 "int8" model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.errors import DataError, EdgesegError
from edgeseg.utils import parse_size

__all__ = [
    "QuantReport",
    "calibration_images",
    "int8_graph",
    "needs_reduced_range",
    "pt2e_convert",
    "quantize_model_onnx",
    "quantize_onnx",
    "quantize_pt2e",
]

log = logging.getLogger(__name__)

#: ONNX op types that carry weights (what "quantized" is about).
_ONNX_COMPUTE = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class QuantReport:
    """What a quantization did."""

    method: str  # "ort-int8" or "pt2e-int8"
    quantized_layers: int  # weight layers running in int8
    fp32_layers: list[str] = field(default_factory=list)  # weight layers left in fp32 (op: name)
    qdq_nodes: int = 0  # quantize + dequantize nodes in the result
    calibration_images: int = 0  # images the activation ranges were calibrated on
    by_op: dict[str, dict[str, int]] = field(default_factory=dict)  # op -> {int8, fp32}
    subpixel: int = 0  # ConvTranspose layers rewritten as conv + pixel shuffle to run in int8

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def calibration_images(
    ckpt: dict[str, Any], data: str | os.PathLike[str] | None, split: str, n: int, size: Any
) -> list[torch.Tensor]:
    """``n`` normalised ``(C, H, W)`` images of ``data``'s ``split`` at ``size``, evenly spaced.

    Raises:
        DataError: no data root given, or the split is missing or empty (named).
    """
    from edgeseg.data import build_dataset
    from edgeseg.data.presets import DatasetInfo
    from edgeseg.data.transforms import eval_transform

    if not data:
        raise DataError("calibration data missing: int8 quantization needs --data ROOT")
    info = DatasetInfo.from_dict(ckpt["dataset"])
    ds = build_dataset(data, split, info, eval_transform(parse_size(size)))
    if len(ds) == 0:
        raise DataError(f"calibration data missing: split {split!r} of {data} is empty")
    idx = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
    return [ds[int(i)][0] for i in idx]


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over a list of images."""

    def __init__(self, name: str, images: list[torch.Tensor]) -> None:
        self._it = iter([{name: x[None].numpy().astype(np.float32)} for x in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


#: Data-movement ops ORT's quantizer leaves in fp32 by default but runs in uint8 once
#: wrapped in quantize/dequantize (a user's ``nn.PixelShuffle``; ours are channels-last
#: Reshape/Transpose moves, which the quantizer wraps by default).
_MOVE_OPS = ("DepthToSpace", "SpaceToDepth")

#: Ops that move or copy values without changing them: with the same scale on both
#: sides, ORT runs them on the uint8 tensor (Pad after :func:`_pads_in_uint8`).
_COPY_OPS = ("Reshape", "Transpose", "Slice", "Pad", "Squeeze", "Unsqueeze", "Identity")

#: Ops that may end a network after its last int8 layer, computing the logits from its
#: output (a classifier's upsampling): with the crop after them, run in fp32, so that
#: the logits are not rounded to 8 bits.
_TAIL_OPS = ("Resize", "ConvTranspose")

#: Ops of an ORT-optimised graph that compute in int8, and the fp32 ops they replace.
_ONNX_INT8_OPS = {"QLinearConv": "Conv", "QLinearMatMul": "MatMul", "ConvInteger": "Conv",
                  "MatMulInteger": "MatMul", "QGemm": "Gemm"}  # fmt: skip


def _onnx_report(path: Path, n_calib: int) -> QuantReport:
    """What runs in int8: the graph *after* ONNX Runtime's optimisations, not the QDQ file.

    A QDQ file wraps every layer in quantize/dequantize nodes, but only the patterns ORT
    has an int8 kernel for are fused into ``QLinearConv`` etc.; the rest (ConvTranspose on
    CPU) dequantize and run in fp32. Counting the optimised graph reports the truth.
    """
    import onnx
    import onnxruntime as ort

    qdq = sum(
        n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(path)).graph.node
    )
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath).graph
    by_op: dict[str, Counter] = {}
    fp32, n_int8 = [], 0
    for node in graph.node:
        if node.op_type in _ONNX_INT8_OPS:
            by_op.setdefault(_ONNX_INT8_OPS[node.op_type], Counter())["int8"] += 1
            n_int8 += 1
        elif node.op_type in _ONNX_COMPUTE:
            by_op.setdefault(node.op_type, Counter())["fp32"] += 1
            fp32.append(f"{node.op_type}: {node.name}")
    return QuantReport(
        "ort-int8", n_int8, fp32, qdq, n_calib, {k: dict(v) for k, v in by_op.items()}
    )


def _links(g: Any) -> tuple[dict[str, Any], defaultdict[str, list[Any]]]:
    """``(producer, readers)`` of a graph: the node writing each tensor, the nodes reading it."""
    producer = {o: n for n in g.node for o in n.output}
    readers: defaultdict[str, list[Any]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            readers[i].append(n)
    return producer, readers


def _prepare_for_int8(path: Path, reduce_range: bool) -> dict[str, Any]:
    """Rewrite the pre-processed fp32 model where ORT's int8 kernels need another form.

    Two exact edits (:func:`_drop_zero_pad_values`, :func:`_pools_as_depthwise_convs`);
    the file is rewritten only if one applied. Returns more arguments for
    ``quantize_static``:

    - ``extra_options``: with ``reduce_range``, depthwise conv weights keep all 8 bits.
      ORT's int8 depthwise kernel widens both operands to int16 before multiplying and
      cannot saturate; only its GEMM-based convs need the 7-bit weights
      (:func:`needs_reduced_range`). SegFast (mostly depthwise) on CamVid val: mIoU
      0.5332 fp32, 0.5238 int8 with every weight at 7 bits, 0.5302 with depthwise ones
      at 8.
    - ``nodes_to_exclude``, layers kept in fp32:

      - max-pools of the network input (ERFNet-style downsamplers). The input is NCHW,
        and ORT's uint8 NCHW max-pool is a scalar loop: 2.07 ms against 0.16 in fp32 for
        ERFNet's first downsampler at 360x480.
      - ``ConvTranspose``: ORT has no int8 CPU kernel for it, so quantizing it only
        rounds its weights and adds a quantize/dequantize pair on its output.
      - the network's tail after its last conv when it computes (:data:`_TAIL_OPS`: the
        logits' upsampling, and the crop after it). Quantized, the full-resolution logits
        were rounded to 8 bits and cost a quantize and a dequantize (SegFast-Basic,
        360x480: 0.9 ms).
    """
    import onnx

    proto = onnx.load(str(path))
    if _drop_zero_pad_values(proto) + _pools_as_depthwise_convs(proto):
        onnx.save(proto, str(path))
    g = proto.graph
    # the input, and the input padded to the stride
    inputs = {g.input[0].name} | {
        n.output[0] for n in g.node if n.op_type == "Pad" and n.input[0] == g.input[0].name
    }
    exclude = [
        n.name
        for n in g.node
        if (n.op_type == "MaxPool" and n.input[0] in inputs) or n.op_type == "ConvTranspose"
    ]
    producer, consumers = _links(g)
    for out in g.output:
        # Moves and crops back to an fp32-computing op (which then stays fp32 with them);
        # a tail of moves alone (L3U-Net's unfold) moves uint8, 4x fewer bytes.
        node, tail = producer.get(out.name), []
        while (
            node is not None and node.op_type in _COPY_OPS and len(consumers[node.output[0]]) <= 1
        ):
            tail.append(node.name)
            node = producer.get(node.input[0])
        if node is not None and node.op_type in _TAIL_OPS and len(consumers[node.output[0]]) <= 1:
            exclude.extend(n for n in [*tail, node.name] if n not in exclude)
    full = {}
    if reduce_range:
        shapes = {t.name: list(t.dims) for t in g.initializer}
        for node in g.node:
            w = shapes.get(node.input[1]) if node.op_type == "Conv" else None
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if w is not None and group > 1 and w[0] == group and w[1] == 1:  # (C, 1, kh, kw)
                full[node.input[1]] = [{"reduce_range": False}]
    return {
        "extra_options": {"TensorQuantOverrides": full} if full else {},
        "nodes_to_exclude": exclude,
    }


def _constants(proto: Any) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of a graph, by name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def _drop_zero_pad_values(proto: Any) -> int:
    """Remove explicit zero ``constant_value`` inputs of ``Pad`` nodes (0 is the default).

    ORT's quantizer would quantize that input like an activation, leaving a dequantized
    constant that :func:`_pads_in_uint8` cannot rewrite. Edits ``proto`` in place;
    returns how many were dropped.
    """
    consts = _constants(proto)
    dropped = 0
    for node in proto.graph.node:
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        if node.op_type != "Pad" or mode != b"constant" or len(node.input) < 3:
            continue
        value = consts.get(node.input[2])
        if value is not None and value.size == 1 and float(value.reshape(())) == 0.0:
            node.input[2] = ""  # an omitted optional input: the default, 0
            dropped += 1
    if dropped:  # the zero constants nothing reads any more go too (ORT warns about them)
        used = {i for n in proto.graph.node for i in n.input}
        dead = [t for t in proto.graph.initializer if t.name not in used]
        for t in dead:
            proto.graph.initializer.remove(t)
    return dropped


def _pools_as_depthwise_convs(proto: Any) -> int:
    """Replace non-overlapping ``AveragePool`` nodes by depthwise convs with weights 1/(k*k).

    ORT's int8 average pool (``QLinearAveragePool``) works element by element; the same
    mean as a depthwise conv runs in its int8 depthwise kernel, and the weight ``1/(kh*kw)``
    is exact in per-channel int8 (it is the channel's largest weight). SegFast's three
    2x2 pools at 360x480, 2 threads: 3.8 -> 0.3 ms. Only pools whose stride equals the
    kernel, without padding or ceil mode, and whose input's channel count shape inference
    knows, are replaced (then ``count_include_pad`` cannot matter). Edits ``proto`` in
    place; returns how many were replaced.
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    channels = {}
    for vi in [*g.value_info, *g.input]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[vi.name] = dims[1].dim_value
    n = 0
    for i, node in enumerate(list(g.node)):
        if node.op_type != "AveragePool" or node.input[0] not in channels:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        if (
            len(kernel) != 2
            or list(attrs.get("strides", [1, 1])) != kernel
            or any(attrs.get("pads", [0]))
            or attrs.get("ceil_mode", 0)
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
            or any(d != 1 for d in attrs.get("dilations", [1, 1]))
        ):
            continue
        c = channels[node.input[0]]
        weight = np.full((c, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=np.float32)
        w_name = f"{node.name or node.output[0]}_mean_weight"
        g.initializer.append(numpy_helper.from_array(weight, w_name))
        conv = helper.make_node(
            "Conv",
            [node.input[0], w_name],
            list(node.output),
            name=node.name,
            group=c,
            kernel_shape=kernel,
            strides=kernel,
        )
        g.node.remove(node)
        g.node.insert(i, conv)
        n += 1
    return n


def _pads_in_uint8(proto: Any) -> int:
    """Run zero pads on the quantized tensor: ``DQ -> Pad(0) -> Q`` becomes ``Pad(zp)``.

    ONNX Runtime drops the dequantize/quantize pair around data-movement ops (Slice,
    DepthToSpace, ...) but not around ``Pad``, so each of SegFast's decoder pads and the
    pad-to-stride of the input ran in fp32, with a dequantize and a quantize of the whole
    tensor around it. With the same scale and zero point on both sides the rewrite is
    exact: padding with 0.0 in fp32 is padding with the zero point in uint8 (0.0 is
    always representable in ORT's quantization). Edits ``proto`` in place; returns how
    many pads were rewritten.
    """
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer, consumers = _links(g)

    def qparams(node: Any) -> tuple[Any, Any] | None:
        scale = inits.get(node.input[1])
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or scale.size != 1 or zp is None or zp.size != 1:
            return None  # per-channel or computed parameters: leave it
        return scale.reshape(()), zp.reshape(())

    removed: list[Any] = []
    for pad in list(g.node):
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if pad.op_type != "Pad" or mode != b"constant" or (len(pad.input) > 2 and pad.input[2]):
            continue
        if len(pad.input) > 3 and pad.input[3]:
            continue  # axes: keep the rewrite to the plain form
        dq, users = producer.get(pad.input[0]), consumers.get(pad.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1:
            continue
        q = users[0]
        if q.op_type != "QuantizeLinear" or q.output[0] in {o.name for o in g.output}:
            continue
        a, b = qparams(dq), qparams(q)
        if a is None or b is None or a[0] != b[0] or a[1] != b[1] or a[1].dtype != b[1].dtype:
            continue
        zp_name = f"{pad.name or pad.output[0]}_zero_point"
        g.initializer.append(numpy_helper.from_array(a[1].copy(), zp_name))
        pads = pad.input[1]
        del pad.input[:]
        pad.input.extend([dq.input[0], pads, zp_name])  # (uint8 data, pads, zero point)
        pad.output[0] = q.output[0]
        removed.append(q)
        if len(consumers[dq.output[0]]) == 1:  # the pad was the dequantize's only reader
            removed.append(dq)
    for n in removed:
        g.node.remove(n)
    return sum(n.op_type == "QuantizeLinear" for n in removed)


def _concat_inputs_share_scale(proto: Any) -> int:
    """Quantize each tensor a ``Concat`` alone reads straight to the concat's scale.

    ORT's int8 concat copies an input whose scale and zero point are the output's and
    re-quantizes any other through a lookup table, about twice the time per byte; the
    quantizer gives every tensor its own calibrated range, so a fire module's two
    expands were re-quantized at every concat. The concat's calibrated range covers each
    input's, so quantizing the input to it directly rounds once instead of twice.

    An input is followed back through a chain of tensors each read once: ``Q -> DQ``
    pairs, the data-movement ops of :data:`_COPY_OPS` between them, and inner concats
    (a transposed conv's phases, concatenated and put into space before a decoder's skip
    concat); every pair on the chain takes the outer concat's scale. Not an input whose
    first quantizer has zero point 0 when the concat's has not: that range may stand for
    a ReLU the quantizer removed. ``Shape`` readers do not count (shapes do not depend on
    the scale). Squeeze U-Net int8 at 360x480, 2 threads: 279 -> 271 ms. Run it before
    :func:`_pads_in_uint8`. Edits ``proto`` in place; returns how many concat inputs
    were changed.
    """
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer, consumers = _links(g)
    outputs = {o.name for o in g.output}

    def readers(name: str) -> int:
        shapes = sum(n.op_type == "Shape" for n in consumers.get(name, []))
        return len(consumers.get(name, [])) - shapes + (name in outputs)

    def qparams(node: Any) -> tuple[str, int] | None:
        """A Q or DQ node's per-tensor ``(scale name, zero point)``, else None."""
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            return None
        if inits[node.input[1]].dims not in ([], [1]):
            return None  # per-channel
        return node.input[1], int(numpy_helper.to_array(inits[node.input[2]]).reshape(-1)[0])

    def chain(name: str) -> tuple[list[Any], list[int]] | None:
        """The Q/DQ nodes behind concat input ``name`` and the source zero points."""
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None else None
        if (
            dq is None
            or dq.op_type != "DequantizeLinear"
            or q is None
            or q.op_type != "QuantizeLinear"
            or readers(name) != 1
            or readers(dq.input[0]) != 1
            or qparams(q) is None
        ):
            return None
        src = producer.get(q.input[0])
        if src is not None and readers(q.input[0]) == 1:
            padded = src.op_type == "Pad" and len(src.input) > 2 and src.input[2]  # a value
            if src.op_type in _COPY_OPS and not padded:
                inner = chain(src.input[0])
                if inner is not None:
                    return [q, dq, *inner[0]], inner[1]
            if src.op_type == "Concat":
                parts = [chain(i) for i in src.input]
                if all(p is not None for p in parts):
                    return [q, dq, *(n for p in parts for n in p[0])], [
                        z for p in parts for z in p[1]
                    ]
        return [q, dq], [qparams(q)[1]]

    changed = 0
    for cat in g.node:
        if cat.op_type != "Concat" or readers(cat.output[0]) != 1:
            continue
        q_out = consumers[cat.output[0]][0]
        if q_out.op_type != "QuantizeLinear" or qparams(q_out) is None:
            continue
        scale, zp = q_out.input[1], q_out.input[2]
        zp_out = qparams(q_out)[1]
        for name in cat.input:
            found = chain(name)
            if found is None or (zp_out != 0 and 0 in found[1]):
                continue
            for node in found[0]:
                node.input[1], node.input[2] = scale, zp
            changed += 1
    return changed


def _shapes_of_quantized(proto: Any) -> int:
    """Let ``Shape`` read the uint8 tensor instead of a dequantized copy made only for it.

    The pad-to-stride arithmetic takes shapes of the input and of cropped decoder maps;
    the quantizer gave each such ``Shape`` its own full-size dequantize. The shape is the
    same either way. Edits ``proto`` in place; returns how many dequantizes went.
    """
    g = proto.graph
    dq_of = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    for n in g.node:
        if n.op_type == "Shape" and n.input[0] in dq_of:
            n.input[0] = dq_of[n.input[0]].input[0]
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    dead = [n for n in dq_of.values() if n.output[0] not in read]
    for n in dead:
        g.node.remove(n)
    return len(dead)


def needs_reduced_range(isa: str | None = None) -> bool:
    """Whether int8 weights should use 7 bits on this CPU (ONNX Runtime's own guidance).

    Without VNNI, ORT's uint8 x int8 kernels on x86 (AVX2, AVX-512) add pairs of products
    in int16 (``vpmaddubsw``), which saturates for large weights and activations. Measured
    on an AVX2 EPYC: ERFNet's int8 logits agreed with fp32 on 86.7 % of CamVid val pixels
    (mIoU 0.6189 -> 0.5075) with 8-bit weights, 98.7 % with 7-bit ones. VNNI (and ARM's
    dot product) accumulate in int32 and keep the full range.
    """
    from edgeseg.profiling import cpu_isa

    return (cpu_isa() if isa is None else isa) in ("AVX2", "AVX-512")


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    images: list[torch.Tensor],
    *,
    reduce_range: bool | None = None,
) -> QuantReport:
    """ONNX Runtime static int8 quantization (QDQ, per-channel weights), written atomically.

    Args:
        fp32_path: an fp32 ONNX model (e.g. from :func:`edgeseg.export.export_onnx`).
        out_path: the int8 model to write (edgeseg's metadata is carried over).
        images: calibration inputs, normalised ``(C, H, W)``.
        reduce_range: 7-bit weights (depthwise convs keep 8 bits); ``None`` decides by this CPU
            (:func:`needs_reduced_range`). The file runs anywhere either way; build it on
            (or for) the CPU that will run it.

    Raises:
        EdgesegError: no calibration images, or the result has no quantize/dequantize
            nodes (nothing was quantized).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not images:
        raise DataError("calibration data missing: no calibration images")
    if reduce_range is None:
        reduce_range = needs_reduced_range()
    src, out = Path(fp32_path), Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # ONNX shape inference suffices for convnets; ORT's symbolic one cannot
            # resolve the pad-to-stride arithmetic of dynamic height and width.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            more = _prepare_for_int8(pre, reduce_range)
            name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
            quantize_static(
                str(pre),
                str(q),
                _Reader(name, images),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                reduce_range=reduce_range,
                **more,
                # ORT's default op list plus the pixel (un)shuffles, so that they move
                # uint8 instead of fp32 (4x less memory traffic) between int8 convs.
                op_types_to_quantize=sorted({*QDQRegistry, *QLinearOpsRegistry, *_MOVE_OPS}),
            )
        proto = onnx.load(str(q))
        # Order matters: shapes stop counting as readers, then scales are shared along
        # chains that may hold pads, then pads move to uint8 with the final zero points.
        if _shapes_of_quantized(proto) + _concat_inputs_share_scale(proto) + _pads_in_uint8(proto):
            onnx.save(proto, str(q))
        report = _onnx_report(q, len(images))
        if report.qdq_nodes == 0 or report.quantized_layers == 0:
            raise EdgesegError(f"int8 quantization of {src} produced no quantized layers")
        precision = "int8 (ORT static, QDQ" + (
            ", 7-bit weights, 8-bit depthwise)" if reduce_range else ")"
        )
        proto = onnx.load(str(q))
        meta = {
            p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props
        }
        del proto.metadata_props[:]
        for k, v in {**meta, "edgeseg.precision": precision}.items():
            e = proto.metadata_props.add()
            e.key, e.value = k, v
        onnx.save(proto, str(q))
        os.replace(q, out)
    log.info(
        "int8: %d layers quantized, %d left in fp32",
        report.quantized_layers,
        len(report.fp32_layers),
    )
    return report


def int8_graph(model: nn.Module) -> tuple[nn.Module, int]:
    """The network as the ONNX int8 route sees it: a copy with BatchNorm folded into the
    convs and folds fused (:func:`edgeseg.inference.inference_graph`), then every eligible
    transposed conv rewritten as conv + pixel shuffle.

    Folding first matters: a BatchNorm after the pixel shuffle could no longer be fused
    into the conv by ONNX Runtime and would run as a separate fp32 op.

    Returns:
        ``(model copy, number of transposed convs rewritten)``.
    """
    from edgeseg.compress.subpixel import subpixel_deconvs
    from edgeseg.inference import inference_graph

    return subpixel_deconvs(inference_graph(model.eval()))


def quantize_model_onnx(
    model: nn.Module,
    out_path: str | os.PathLike[str],
    images: list[torch.Tensor],
    input_size: tuple[int, int],
    *,
    opset: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> QuantReport:
    """Export ``model`` for int8 (:func:`int8_graph`) and quantize it with ONNX Runtime.

    Measured here at 360x480, 2 threads, int8 ONNX Runtime: 1.33x faster for Squeeze
    U-Net and 1.18x for SegFast-Basic than quantizing the plain export, where their
    transposed convs stayed fp32 between dequantize/quantize steps.

    Raises:
        EdgesegError: as :func:`quantize_onnx`.
    """
    from edgeseg.export import DEFAULT_OPSET, export_onnx

    if not images:
        raise DataError("calibration data missing: no calibration images")
    opset = opset or DEFAULT_OPSET
    graph, n = int8_graph(model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32-subpixel.onnx"
        export_onnx(graph, fp32, input_size=input_size, opset=opset, metadata=metadata)
        report = quantize_onnx(fp32, out, images)
    report.subpixel = n
    return report


def pt2e_convert(
    model: nn.Module, images: list[torch.Tensor], example: torch.Tensor
) -> tuple[torch.fx.GraphModule, QuantReport]:
    """PT2E int8 graph (not yet compiled): export, prepare, calibrate, convert.

    Raises:
        EdgesegError: torchao missing, no calibration images, or no quantized layer.
    """
    # torchao warns at import about its CUDA-only kernels, irrelevant on a CPU.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise EdgesegError("pt2e-int8 needs torchao: pip install torchao") from None
    if not images:
        raise DataError("calibration data missing: no calibration images")
    from edgeseg.inference import inference_graph

    # BatchNorm folded by edgeseg first: PT2E's own folding mis-shapes the bias of a
    # grouped transposed conv (SegFast's depthwise upsampling) and fails in convert.
    model = inference_graph(model.eval())
    try:
        with torch.no_grad():
            graph = torch.export.export(model, (example,)).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(graph, quantizer)
            for x in images:
                prepared(x[None].to(example.dtype))
            converted = convert_pt2e(prepared)
    except Exception as e:  # torch.export / torchao raise many kinds; one line for the user
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"PT2E quantization failed: {detail}") from None
    report = _pt2e_report(converted, len(images))
    if report.qdq_nodes == 0 or report.quantized_layers == 0:
        raise EdgesegError("PT2E quantization produced no quantized layers")
    return converted, report


def quantize_pt2e(
    model: nn.Module, images: list[torch.Tensor], example: torch.Tensor
) -> tuple[nn.Module, QuantReport]:
    """PT2E int8 with torchao's X86 Inductor quantizer, compiled with ``torch.compile``.

    Args:
        model: eval-mode fp32 model.
        images: calibration inputs, normalised ``(C, H, W)`` at ``example``'s size.
        example: an input of the shape the compiled model will run at.

    Returns:
        ``(compiled int8 model, report)``. Compilation happens here, on ``example``.

    Raises:
        EdgesegError: torchao missing, no calibration images, or no quantized layer.
    """
    import torch._inductor.config as inductor_config

    converted, report = pt2e_convert(model, images, example)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(converted)
        compiled(example)
    return compiled, report


def _pt2e_report(gm: torch.fx.GraphModule, n_calib: int) -> QuantReport:
    """Convs whose weight and input come through a dequantize node are int8."""
    compute = {
        "aten.conv2d.default": "Conv",
        "aten.conv_transpose2d.input": "ConvTranspose",
        "aten.linear.default": "Gemm",
    }
    qdq, n_int8, fp32 = 0, 0, []
    by_op: dict[str, Counter] = {}
    for node in gm.graph.nodes:
        target = str(node.target)
        if "quantize_per" in target or "dequantize_per" in target:
            qdq += 1
        op = compute.get(target)
        if op is None:
            continue
        args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        is_q = len(args) == 2 and all("dequantize" in str(a.target) for a in args)
        by_op.setdefault(op, Counter())["int8" if is_q else "fp32"] += 1
        if is_q:
            n_int8 += 1
        else:
            fp32.append(f"{op}: {node.name}")
    return QuantReport(
        "pt2e-int8", n_int8, fp32, qdq, n_calib, {k: dict(v) for k, v in by_op.items()}
    )
