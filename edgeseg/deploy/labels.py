"""Label maps out of the graph: an ONNX model whose output is the uint8 class map.

A segmentation network's logits at full resolution are its largest tensor: ``(1, K, H,
W)`` float, bilinearly upsampled inside the graph, copied out of the engine, then
arg-maxed on the host. For a small network that tail costs as much as the network
(PaddleSeg's PP-MobileSeg halved its ARM latency by upsampling only what the arg-max
needs). Two rewrites of an exported file, both exact about shapes (any H, W, batch):

==============  ===========================================================================
``labels``      the arg-max over classes at full resolution, inside the graph: the host
                gets ``(N, H, W)`` uint8 instead of ``(N, K, H, W)`` float (same labels as
                the logits' arg-max)
``labels-low``  the arg-max at the network's own output resolution (before its final
                bilinear upsampling, 1/4 or 1/8 of the input for most of the zoo), then a
                nearest upsampling of the uint8 labels: the full-size float tensor is never
                made; labels differ from the logits' near class edges (the mIoU cost is
                measured, ``benchmarks/labels.py``)
``labels-half`` the final bilinear upsampling stops at 1/2 (``labels-quarter``: 1/4) of the
                output size, the arg-max runs there, then the uint8 labels are upsampled
                by nearest: a quarter (a sixteenth) of the full-size float tensor is made;
                labels differ from the logits' only within a pixel or two of class edges
                (the middle ground for a network whose logits are at 1/8)
==============  ===========================================================================

A network whose last layer already runs at full resolution (a transposed conv, U-Net's
last conv) has no final resize: ``labels-low`` and the reduced forms are then the same
graph as ``labels``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgeseg.defaults import OUTPUTS
from edgeseg.errors import EdgesegError

__all__ = ["OUTPUTS", "label_output", "labels_file"]

log = logging.getLogger(__name__)

#: The name of the label-map output (the logits output is ``logits``).
LABELS = "labels"
#: The reduced-resolution forms: the divisor of the output size the arg-max runs at.
REDUCED = {"labels-half": 2, "labels-quarter": 4}


def _tail(g: Any) -> tuple[Any, Any | None]:
    """``(crop, resize)``: the node writing the graph's output, and the bilinear Resize
    feeding it (directly or through its crop Slice), or ``None`` when there is none."""
    producer = {o: n for n in g.node for o in n.output}
    last = producer.get(g.output[0].name)
    if last is None:
        raise EdgesegError("the graph's output is not computed by any node")
    node = last
    if node.op_type == "Slice":  # the crop back from the stride-padded size
        node = producer.get(node.input[0])
    if node is not None and node.op_type == "Resize":
        return last, node
    return last, None


def _const(g: Any, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    g.initializer.append(numpy_helper.from_array(value, name))
    return name


def label_output(proto: Any, kind: str = "labels") -> str:
    """Rewrite ``proto`` (in place) so its output is the ``(N, H, W)`` uint8 label map.

    Args:
        proto: an exported edgeseg model (one float logits output ``(N, K, H, W)``).
        kind: ``labels`` (arg-max at full resolution), ``labels-low`` (arg-max before the
            final upsampling, nearest upsampling of the labels), ``labels-half`` or
            ``labels-quarter`` (the final upsampling to 1/2 or 1/4 of the output size,
            arg-max there, nearest upsampling of the labels).

    Returns:
        The form applied: the reduced forms fall back to ``labels`` where the network has
        no final resize (said in the log).

    Raises:
        EdgesegError: an unknown kind, or a graph that is not one logits output.
    """
    from onnx import TensorProto, helper

    if kind not in OUTPUTS[1:]:
        raise EdgesegError(f"--output {kind!r}: choose one of {', '.join(OUTPUTS)}")
    g = proto.graph
    if len(g.output) != 1:
        raise EdgesegError(f"a label output needs one logits output, not {len(g.output)}")
    crop, resize = _tail(g)
    if kind != "labels" and resize is None:
        log.info("no final resize in this network: its labels are taken at full resolution")
        kind = "labels"
    if kind == "labels":  # (N, K, H, W) -> (N, H, W)
        logits = g.output[0].name
        nodes = [
            helper.make_node("ArgMax", [logits], ["es_argmax"], axis=1, keepdims=0),
            helper.make_node("Cast", ["es_argmax"], [LABELS], to=TensorProto.UINT8),
        ]
    else:
        nodes = _low_labels(g, crop, resize, REDUCED.get(kind))
    g.node.extend(nodes)
    dims = [g.output[0].type.tensor_type.shape.dim[i] for i in (0, 2, 3)]
    out = helper.make_tensor_value_info(LABELS, TensorProto.UINT8, None)
    for d in dims:
        new = out.type.tensor_type.shape.dim.add()
        new.CopyFrom(d)
    del g.output[:]
    g.output.append(out)
    _prune(g)
    return kind


def _full_sizes(g: Any, resize: Any, nodes: list[Any]) -> str:
    """The name of the final resize's output sizes ``(N, K, H, W)`` int64: its ``sizes``
    input, or ``floor(shape(x) * scales)`` (ONNX's rule) when it was given scales."""
    from onnx import TensorProto, helper

    ins = list(resize.input) + [""] * (4 - len(resize.input))
    if ins[3]:
        return ins[3]
    make = helper.make_node
    nodes.append(make("Shape", [ins[0]], ["es_in_shape"]))
    nodes.append(make("Cast", ["es_in_shape"], ["es_in_shape_f"], to=TensorProto.FLOAT))
    nodes.append(make("Mul", ["es_in_shape_f", ins[2]], ["es_out_f"]))
    nodes.append(make("Floor", ["es_out_f"], ["es_out_floor"]))
    nodes.append(make("Cast", ["es_out_floor"], ["es_full_sizes"], to=TensorProto.INT64))
    return "es_full_sizes"


def _low_labels(g: Any, crop: Any, resize: Any, divisor: int | None) -> list[Any]:
    """Nodes from the final resize's input to the ``(N, H, W)`` labels: with ``divisor``
    ``None`` the arg-max runs on that input (``labels-low``), else on the bilinear resize
    to the output size // divisor; the uint8 labels are then resized (nearest) to the
    output size and cropped like the logits were."""
    from onnx import TensorProto, helper

    make = helper.make_node
    nodes: list[Any] = []
    sizes = _full_sizes(g, resize, nodes)
    low = resize.input[0]  # (N, K, h, w) float
    if divisor is not None:  # the same bilinear resize, to (N, K, H // d, W // d)
        div = _const(g, "es_divisor", np.array([1, 1, divisor, divisor], dtype=np.int64))
        one = _const(g, "es_one", np.array([1], dtype=np.int64))
        nodes.append(make("Div", [sizes, div], ["es_reduced_d"]))
        nodes.append(make("Max", ["es_reduced_d", one], ["es_reduced"]))
        roi = resize.input[1] if len(resize.input) > 1 else ""
        reduced = make("Resize", [low, roi, "", "es_reduced"], ["es_reduced_logits"])
        reduced.attribute.extend(resize.attribute)
        nodes.append(reduced)
        low = "es_reduced_logits"
    nodes.append(make("ArgMax", [low], ["es_argmax"], axis=1, keepdims=1))
    nodes.append(make("Cast", ["es_argmax"], ["es_low"], to=TensorProto.UINT8))
    keep = _const(g, "es_sizes_keep", np.array([1, 0, 1, 1], dtype=np.int64))
    channel = _const(g, "es_sizes_one", np.array([0, 1, 0, 0], dtype=np.int64))
    nodes.append(make("Mul", [sizes, keep], ["es_sizes_k"]))  # (N, K, H, W) -> (N, 1, H, W)
    nodes.append(make("Add", ["es_sizes_k", channel], ["es_sizes"]))
    nodes.append(
        make(
            "Resize",
            ["es_low", "", "", "es_sizes"],
            ["es_up"],
            mode="nearest",
            coordinate_transformation_mode="half_pixel",
            nearest_mode="round_prefer_floor",
        )
    )
    cropped = "es_up"
    if crop is not resize:  # the crop Slice, applied to the labels
        nodes.append(make("Slice", ["es_up", *crop.input[1:]], ["es_crop"]))
        cropped = "es_crop"
    axes = _const(g, "es_channel_axis", np.array([1], dtype=np.int64))
    nodes.append(make("Squeeze", [cropped, axes], [LABELS]))
    return nodes


def _prune(g: Any) -> None:
    """Drop the nodes no output depends on any more (the full-size resize of
    ``labels-low``) and the initializers only they read."""
    producer = {o: n for n in g.node for o in n.output}
    needed: set[str] = set()
    stack = [o.name for o in g.output]
    live: list[Any] = []
    seen: set[int] = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            live.append(node)
            stack.extend(i for i in node.input if i)
    kept = [n for n in g.node if id(n) in seen]  # the original order is a topological one
    del g.node[:]
    g.node.extend(kept)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)


def labels_file(path: Any, kind: str) -> str:
    """Rewrite the ONNX file ``path`` (fp32 or int8) to output labels (:func:`label_output`),
    its ``edgeseg.output`` metadata updated; replaced atomically. Returns the form applied."""
    import onnx

    from edgeseg.utils import atomic_write_bytes

    proto = onnx.load(str(path))
    applied = label_output(proto, kind)
    meta = {p.key: p for p in proto.metadata_props}
    entry = meta.get("edgeseg.output") or proto.metadata_props.add()
    entry.key, entry.value = "edgeseg.output", f"{applied} (N, H, W) uint8 class ids"
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return applied
