"""ONNX graph passes: small, exact edits of an exported or quantized model, each a function
``pass(model_proto) -> number of edits`` with its own test, run in an explicit order.

- :data:`EXPORT_PASSES` run on every fp32 export (:func:`edgeseg.deploy.export.export_onnx`).
- :data:`PRE_INT8_PASSES` run on ORT's pre-processed fp32 model, before ``quantize_static``:
  they give ORT's int8 kernels the form they run fast.
- :data:`POST_INT8_PASSES` run on the QDQ model ``quantize_static`` wrote. Order matters:
  unfolded BatchNorms read fp32 and shapes stop counting as readers, then scales are
  shared along copy chains that may hold pads, then pads move to uint8 with the final zero
  points.

:func:`run_passes` applies a list and returns what each pass changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


#: Data-movement ops ORT's quantizer leaves in fp32 by default but runs in uint8 once
#: wrapped in quantize/dequantize (a user's ``nn.PixelShuffle``; ours are channels-last
#: Reshape/Transpose moves, which the quantizer wraps by default).
MOVE_OPS = ("DepthToSpace", "SpaceToDepth")


#: Ops that move or copy values without changing them: with the same scale on both
#: sides, ORT runs them on the uint8 tensor (Pad after :func:`pads_in_uint8`).
COPY_OPS = ("Reshape", "Transpose", "Slice", "Pad", "Squeeze", "Unsqueeze", "Identity")


def graph_links(g: Any) -> tuple[dict[str, Any], defaultdict[str, list[Any]]]:
    """``(producer, readers)`` of a graph: the node writing each tensor, the nodes reading it."""
    producer = {o: n for n in g.node for o in n.output}
    readers: defaultdict[str, list[Any]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            readers[i].append(n)
    return producer, readers


def _constants(proto: Any) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of a graph, by name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def drop_zero_pad_values(proto: Any) -> int:
    """Remove explicit zero ``constant_value`` inputs of ``Pad`` nodes (0 is the default).

    ORT's quantizer would quantize that input like an activation, leaving a dequantized
    constant that :func:`pads_in_uint8` cannot rewrite. Edits ``proto`` in place;
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


def pools_as_depthwise_convs(proto: Any) -> int:
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


def pads_in_uint8(proto: Any) -> int:
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
    producer, consumers = graph_links(g)

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


def concat_inputs_share_scale(proto: Any) -> int:
    """Quantize each tensor a ``Concat`` alone reads straight to the concat's scale.

    ORT's int8 concat copies an input whose scale and zero point are the output's and
    re-quantizes any other through a lookup table, about twice the time per byte; the
    quantizer gives every tensor its own calibrated range, so a fire module's two
    expands were re-quantized at every concat. The concat's calibrated range covers each
    input's, so quantizing the input to it directly rounds once instead of twice.

    An input is followed back through a chain of tensors each read once: ``Q -> DQ``
    pairs, the data-movement ops of :data:`COPY_OPS` between them, and inner concats
    (a transposed conv's phases, concatenated and put into space before a decoder's skip
    concat); every pair on the chain takes the outer concat's scale. Not an input whose
    first quantizer has zero point 0 when the concat's has not: that range may stand for
    a ReLU the quantizer removed. ``Shape`` readers do not count (shapes do not depend on
    the scale). Squeeze U-Net int8 at 360x480, 2 threads: 279 -> 271 ms. Run it before
    :func:`pads_in_uint8`. Edits ``proto`` in place; returns how many concat inputs
    were changed.
    """
    g = proto.graph
    q = _QChains(g)
    changed = 0
    for cat in g.node:
        if cat.op_type != "Concat" or q.readers(cat.output[0]) != 1:
            continue
        q_out = q.consumers[cat.output[0]][0]
        if q_out.op_type != "QuantizeLinear" or q.qparams(q_out) is None:
            continue
        scale, zp = q_out.input[1], q_out.input[2]
        zp_out = q.qparams(q_out)[1]  # type: ignore[index]
        for name in cat.input:
            found = q.chain(name)
            if found is None or (zp_out != 0 and 0 in found[1]):
                continue
            for node in found[0]:
                node.input[1], node.input[2] = scale, zp
            changed += 1
    return changed


class _QChains:
    """Quantize/dequantize chains of a QDQ graph (see :func:`concat_inputs_share_scale`)."""

    def __init__(self, g: Any) -> None:
        self.inits = {t.name: t for t in g.initializer}
        self.producer, self.consumers = graph_links(g)
        self.outputs = {o.name for o in g.output}

    def readers(self, name: str) -> int:
        """Readers of tensor ``name`` (a graph output counts; ``Shape`` nodes do not)."""
        nodes = self.consumers.get(name, [])
        return len(nodes) - sum(n.op_type == "Shape" for n in nodes) + (name in self.outputs)

    def qparams(self, node: Any) -> tuple[str, int] | None:
        """A Q or DQ node's per-tensor ``(scale name, zero point)``, else None."""
        from onnx import numpy_helper

        inits = self.inits
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            return None
        if inits[node.input[1]].dims not in ([], [1]):
            return None  # per-channel
        return node.input[1], int(numpy_helper.to_array(inits[node.input[2]]).reshape(-1)[0])

    def _pair(self, name: str) -> tuple[Any, Any] | None:
        """The singly-read ``Q -> DQ`` pair that produces ``name``, else None."""
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or self.readers(name) != 1:
            return None
        q = self.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or self.readers(dq.input[0]) != 1:
            return None
        return (q, dq) if self.qparams(q) is not None else None

    def chain(self, name: str) -> tuple[list[Any], list[int]] | None:
        """The Q/DQ nodes behind concat input ``name`` and the source zero points: back
        through copy ops (not a Pad with a value) and inner concats."""
        pair = self._pair(name)
        if pair is None:
            return None
        q, dq = pair
        src = self.producer.get(q.input[0])
        if src is not None and self.readers(q.input[0]) == 1:
            padded = src.op_type == "Pad" and len(src.input) > 2 and src.input[2]  # a value
            if src.op_type in COPY_OPS and not padded:
                inner = self.chain(src.input[0])
                if inner is not None:
                    return [q, dq, *inner[0]], inner[1]
            if src.op_type == "Concat":
                parts = [self.chain(i) for i in src.input]
                if all(p is not None for p in parts):
                    nodes = [n for p in parts for n in p[0]]  # type: ignore[union-attr]
                    zps = [z for p in parts for z in p[1]]  # type: ignore[union-attr]
                    return [q, dq, *nodes], zps
        return [q, dq], [self.qparams(q)[1]]  # type: ignore[index]


def norms_read_float(proto: Any) -> int:
    """Let a BatchNorm the export could not fold read its input in fp32, not a
    quantize-dequantize copy of it.

    Such a BatchNorm follows a concat, a pool or an add (DDRNet's DAPPM and head) and stays
    an fp32 op, so rounding its input to uint8 first only loses precision; and OpenVINO's
    CPU plugin crashes compiling ``Concat -> Q -> DQ -> BatchNorm -> ReLU -> Q -> DQ ->
    Conv`` at a static input size. The quantize and dequantize go when nothing else reads
    them. Edits ``proto`` in place; returns how many BatchNorms were rewired.
    """
    g = proto.graph
    prod = {o: n for n in g.node for o in n.output}
    done = 0
    for n in g.node:
        dq = prod.get(n.input[0]) if n.op_type == "BatchNormalization" else None
        q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            n.input[0] = q.input[0]
            done += 1
    for _ in range(2):  # dead dequantizes first, then the quantizes they read
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for n in [n for n in g.node if n.op_type in ("DequantizeLinear", "QuantizeLinear")]:
            if n.output[0] not in read and n.input[0] in prod:  # not a weight's dequantize
                g.node.remove(n)
    return done


def shapes_of_quantized(proto: Any) -> int:
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


def merge_slices(proto: Any) -> int:
    """Merge each ``Slice`` read only by another ``Slice`` on other axes into it.

    The model contract's crop ``y[:, :, :h, :w]`` exports as two Slices, one per axis,
    and ONNX Runtime copies the whole logits tensor for each (0.77 ms per copy for 11
    classes at 360x480 in fp32). As one Slice the crop is one copy. Starts, ends, axes
    and steps are concatenated (by a ``Concat`` node where they are computed, as the
    crop's ends are from the input's shape). Written on onnx_ir's graph (values know
    their producer and uses); edits ``proto`` in place; returns how many Slices were
    merged away.
    """
    import onnx_ir as ir

    model = ir.serde.deserialize_model(proto)
    g = model.graph
    merged = 0
    for first in list(g):
        second = _slice_reader(first)
        if second is None:
            continue
        new = [first.inputs[0]]
        for k, (a, b) in enumerate(zip(first.inputs[1:], second.inputs[1:], strict=True)):
            name = f"{second.name or second.outputs[0].name}_merged_{k}"
            if a.const_value is not None and b.const_value is not None:
                both = np.concatenate(
                    [a.const_value.numpy().reshape(-1), b.const_value.numpy().reshape(-1)]
                )
                v = ir.Value(name=name, const_value=ir.tensor(both, name=name))
                g.register_initializer(v)
            else:
                concat = ir.node("Concat", [a, b], attributes={"axis": 0}, name=name)
                g.insert_before(second, concat)
                v = concat.outputs[0]
            new.append(v)
        for i, v in enumerate(new):
            second.replace_input_with(i, v)
        g.remove(first, safe=True)
        merged += 1
    if merged:  # initializers nothing reads any more (the merged Slices' old ones) go
        for name in [n for n, v in g.initializers.items() if not v.uses()]:
            del g.initializers[name]
        proto.CopyFrom(ir.serde.serialize_model(model))
    return merged


def _slice_reader(first: Any) -> Any:
    """The Slice that alone reads Slice ``first`` on disjoint, known axes, else None."""
    if first.op_type != "Slice" or first.outputs[0].is_graph_output():
        return None
    uses = list(first.outputs[0].uses())
    second = uses[0][0] if len(uses) == 1 else None
    if second is None or second.op_type != "Slice" or second.inputs[0] is not first.outputs[0]:
        return None
    ins = [first.inputs[1:], second.inputs[1:]]
    if len(ins[0]) != len(ins[1]) or any(len(i) < 3 or None in i for i in ins):
        return None
    if any(i[2].const_value is None for i in ins):
        return None  # axes must be known constants, to check that they are disjoint
    axes = [i[2].const_value.numpy().reshape(-1) for i in ins]
    if (axes[0] < 0).any() or (axes[1] < 0).any() or set(axes[0]) & set(axes[1]):
        return None  # negative axes could name the same axis as a positive one
    dtypes = {v.const_value.dtype for pair in ins for v in pair if v.const_value is not None}
    return second if len(dtypes) <= 1 else None  # starts/ends of one Slice share a type


Pass = Callable[[Any], int]

#: Run on every fp32 export.
EXPORT_PASSES: tuple[Pass, ...] = (merge_slices,)
#: Run on ORT's pre-processed fp32 model before ``quantize_static``.
PRE_INT8_PASSES: tuple[Pass, ...] = (drop_zero_pad_values, pools_as_depthwise_convs)
#: Run on the quantized QDQ model, in this order (see the module docstring).
POST_INT8_PASSES: tuple[Pass, ...] = (
    norms_read_float,
    shapes_of_quantized,
    concat_inputs_share_scale,
    pads_in_uint8,
)


def run_passes(proto: Any, passes: Sequence[Pass]) -> dict[str, int]:
    """Apply ``passes`` to ``proto`` in order (each edits it in place).

    Returns:
        ``{pass name: number of edits}``; all zero when the model is unchanged.
    """
    done = {}
    for fn in passes:
        done[fn.__name__] = int(fn(proto))
        if done[fn.__name__]:
            log.debug("onnx pass %s: %d edit(s)", fn.__name__, done[fn.__name__])
    return done
