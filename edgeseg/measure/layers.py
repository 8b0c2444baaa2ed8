"""Per-layer time inside the inference engine, against this CPU's peak of each layer's precision.

:func:`edgeseg.measure.profiling.profile` times PyTorch's stages; a deployed network runs
in another engine, which fuses, re-lays and quantizes it. This module asks the engine
itself: ONNX Runtime's profiler (one event per executed node, after its graph
optimisations: ``FusedConv``, ``QLinearConv``, NCHWc re-layouts) or OpenVINO's
performance counters (per executed node of its runtime graph, with the kernel it picked,
e.g. ``brgconv_avx512_I8`` or ``jit_avx512_dw_I8``, and the precision it ran in). Each
layer's operations (2 x multiply-accumulates of its convolution or matrix product; 0 for
data movement) over its median time give its attained G(FL)OP/s, set against the peak of
its own precision (:mod:`edgeseg.measure.peak`). The layers that take a large share of the
time far below that peak are named: they are where a faster kernel, layout or fusion
would pay, and where none will (a depthwise conv moves a byte per two operations).
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.cpu import cpu_name
from edgeseg.defaults import LAYER_ENGINES
from edgeseg.errors import EdgesegError

__all__ = ["LAYER_ENGINES", "LayerProfile", "LayerTime", "profile_layers"]

log = logging.getLogger(__name__)

#: A layer is named as slow when it takes at least this share of the time...
SLOW_SHARE = 0.03
#: ...at under this fraction of the peak of its precision.
SLOW_FRACTION = 0.10
#: OpenVINO's runtime precisions -> edgeseg's names.
_OV_PRECISION = {"f32": "fp32", "bf16": "bf16", "i8": "int8", "u8": "int8", "f16": "fp16"}


@dataclass
class LayerTime:
    """One executed node of the engine's graph."""

    name: str  # the engine's node name
    op: str  # the engine's op: FusedConv, QLinearConv, Convolution, Reorder, ...
    kernel: str  # the implementation (OpenVINO's primitive) or the execution provider
    precision: str  # fp32 | bf16 | int8, as the engine ran it
    ms: float  # median per inference
    flops: int = 0  # 2 x multiply-accumulates (0 for data movement)
    share: float = 0.0  # of the summed layer time
    gops: float = 0.0  # attained G(FL)OP/s
    peak_fraction: float | None = None  # gops over the peak of ``precision``


@dataclass
class LayerProfile:
    """What :func:`profile_layers` measured; ``to_dict()`` is the JSON form."""

    file: str  # the ONNX file profiled
    engine: str  # ort | openvino | openvino-bf16
    input_size: tuple[int, int]  # (H, W)
    threads: int  # intra-op threads
    runs: int  # timed inferences (the medians are over these)
    cpu: str  # this CPU, named
    layers: list[LayerTime]  # in execution order
    total_ms: float  # summed median layer time
    peaks: dict[str, float] = field(default_factory=dict)  # G(FL)OP/s per precision

    def slow(self, share: float = SLOW_SHARE, fraction: float = SLOW_FRACTION) -> list[LayerTime]:
        """Layers with operations that take ``share`` of the time or more at under
        ``fraction`` of their precision's peak, the costliest first."""
        rows = [
            r
            for r in self.layers
            if r.flops and r.share >= share and (r.peak_fraction or 0.0) < fraction
        ]
        return sorted(rows, key=lambda r: -r.ms)

    def by_op(self) -> list[dict[str, Any]]:
        """Time, operations and attainment summed per (op, kernel, precision), costliest first."""
        groups: dict[tuple[str, str, str], list[LayerTime]] = {}
        for r in self.layers:
            groups.setdefault((r.op, r.kernel, r.precision), []).append(r)
        out = []
        for (op, kernel, prec), rows in groups.items():
            ms, flops = sum(r.ms for r in rows), sum(r.flops for r in rows)
            peak = self.peaks.get(prec)
            gops = flops / ms / 1e6 if ms > 0 else 0.0
            out.append(
                {
                    "op": op,
                    "kernel": kernel,
                    "precision": prec,
                    "count": len(rows),
                    "ms": ms,
                    "share": ms / self.total_ms if self.total_ms else 0.0,
                    "gops": gops,
                    "peak_fraction": gops / peak if peak and flops else None,
                }
            )
        return sorted(out, key=lambda g: -g["ms"])

    def table(self, top: int = 12) -> str:
        """Markdown: the ops grouped, then the ``top`` costliest layers."""
        pct = lambda f: "-" if f is None else f"{100 * f:.0f} %"  # noqa: E731
        lines = [
            f"{self.engine} on {self.cpu}, {self.threads} threads, "
            f"{self.input_size[0]}x{self.input_size[1]}: {self.total_ms:.2f} ms in layers; "
            "peaks " + ", ".join(f"{p} {g:.0f}" for p, g in self.peaks.items()) + " G(FL)OP/s",
            "",
            "| op | kernel | precision | layers | ms | share | G(FL)OP/s | % peak |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for g in self.by_op()[:top]:
            lines.append(
                f"| {g['op']} | {g['kernel']} | {g['precision']} | {g['count']} | "
                f"{g['ms']:.2f} | {100 * g['share']:.1f} % | {g['gops']:.0f} | "
                f"{pct(g['peak_fraction'])} |"
            )
        lines += [
            "",
            "| layer | op | ms | share | G(FL)OP/s | % peak |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in sorted(self.layers, key=lambda r: -r.ms)[:top]:
            lines.append(
                f"| {r.name} | {r.op} ({r.precision}) | {r.ms:.3f} | {100 * r.share:.1f} % | "
                f"{r.gops:.0f} | {pct(r.peak_fraction)} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["by_op"] = self.by_op()
        d["slow"] = [r.name for r in self.slow()]
        return d


def profile_layers(
    path: str | os.PathLike[str],
    engine: str = "ort",
    input_size: tuple[int, int] = (360, 480),
    *,
    threads: int = 2,
    warmup: int = 5,
    runs: int = 20,
    peak: bool = True,
    peaks: dict[str, float] | None = None,
) -> LayerProfile:
    """Per-layer times of an ONNX file (fp32 or int8 QDQ) inside ``engine``.

    Args:
        path: the ONNX file (an edgeseg export, or any one-input image network).
        engine: ``ort``, ``openvino`` (f32 float layers) or ``openvino-bf16``.
        input_size: ``(H, W)`` of the one image it runs on.
        threads: the engine's intra-op threads.
        warmup: untimed inferences first.
        runs: timed inferences; each layer's median over them is kept.
        peak: measure this CPU's peak of each precision seen (a few seconds).
        peaks: the peaks already measured (G(FL)OP/s per precision): used as given.

    Raises:
        EdgesegError: an unknown engine, an engine not installed, an unreadable file.
    """
    from edgeseg_runtime.backends import unavailable

    if engine not in LAYER_ENGINES:
        raise EdgesegError(f"--engine {engine!r}: choose one of {', '.join(LAYER_ENGINES)}")
    why = unavailable(engine)
    if why:
        raise EdgesegError(why)
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"{p}: no such ONNX file")
    x = np.random.default_rng(0).random((1, 3, *input_size), dtype=np.float32)
    if engine == "ort":
        layers = _ort_layers(p, x, threads, warmup, runs)
    else:
        layers = _ov_layers(p, x, threads, warmup, runs, engine)
    total = sum(r.ms for r in layers)
    if peaks is None:
        peaks = _peaks({r.precision for r in layers if r.flops}, threads) if peak else {}
    for r in layers:
        r.share = r.ms / total if total else 0.0
        r.gops = r.flops / r.ms / 1e6 if r.ms > 0 else 0.0
        top = peaks.get(r.precision)
        r.peak_fraction = r.gops / top if top and r.flops else None
    return LayerProfile(
        str(p), engine, tuple(input_size), threads, runs, cpu_name(), layers, total, peaks
    )


def _peaks(precisions: set[str], threads: int) -> dict[str, float]:
    """This CPU's peak of each precision (instruction loops, library GEMM where faster)."""
    from edgeseg.measure.peak import PRECISIONS, measure_peak

    wanted = tuple(p for p in PRECISIONS if p in precisions)
    if not wanted:
        return {}
    pk = measure_peak(threads, precisions=wanted)
    return {p: g for p in wanted if (g := pk.of(p))}


# ------------------------------------------------------------------ ONNX Runtime


def _ort_layers(path: Path, x: np.ndarray, threads: int, warmup: int, runs: int) -> list[LayerTime]:
    """Per-node medians from ONNX Runtime's profiler, the operations of each node taken
    from the file's own graph (the engine's fused node keeps its conv's name)."""
    import onnxruntime as ort

    flops = graph_flops(path, x.shape, aliases=True)
    with tempfile.TemporaryDirectory(prefix="edgeseg-layers-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EdgesegError(
                f"{path}: ONNX Runtime cannot load it ({type(e).__name__})"
            ) from None
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    durations: dict[str, list[float]] = {}
    first: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        durations.setdefault(name, []).append(e["dur"] / 1e3)  # us -> ms
        first.setdefault(name, e["args"])
    rows = []
    for name, ds in durations.items():
        args = first[name]
        op = str(args.get("op_name", "?"))
        rows.append(
            LayerTime(
                name=name,
                op=op,
                kernel=str(args.get("provider", "CPUExecutionProvider")).replace(
                    "ExecutionProvider", ""
                ),
                precision=_ort_precision(op, args),
                ms=statistics.median(ds[warmup:] or ds),
                flops=_match(name, op, flops),
            )
        )
    return rows


def _ort_precision(op: str, args: dict[str, Any]) -> str:
    """int8 for ONNX Runtime's quantized kernels, else fp32."""
    if op.startswith(("QLinear", "ConvInteger", "MatMulInteger", "DynamicQuant")):
        return "int8"
    outs = args.get("output_type_shape") or [{}]
    kind = next(iter(outs[0]), "float") if outs and isinstance(outs[0], dict) else "float"
    return "int8" if kind in ("uint8", "int8") and op not in ("Cast", "ArgMax") else "fp32"


#: Ops of ONNX Runtime's optimised graph that multiply-accumulate.
_MAC_OPS = (
    "Conv",
    "FusedConv",
    "NhwcFusedConv",
    "QLinearConv",
    "ConvInteger",
    "ConvTranspose",
    "MatMul",
    "FusedMatMul",
    "QLinearMatMul",
    "MatMulInteger",
    "Gemm",
)


def _match(name: str, op: str, flops: dict[str, int]) -> int:
    """The operations of the graph node an engine node came from: its name with ORT's
    ``_nchwc`` / ``_token_N`` suffixes taken off, else the longest graph name it starts with
    (``node_Conv_31`` must not claim ``node_Conv_314_token_5``)."""
    if op not in _MAC_OPS:
        return 0
    base = re.sub(r"(_token_\d+)+$", "", name.removesuffix("_nchwc"))
    if base in flops:
        return flops[base]
    best = ""
    for n in flops:
        if len(n) > len(best) and name.startswith(n):
            rest = name[len(n) :]
            if not rest or not rest[0].isalnum():
                best = n
    return flops.get(best, 0)


def graph_flops(
    path: str | os.PathLike[str], shape: tuple[int, ...], aliases: bool = False
) -> dict[str, int]:
    """2 x multiply-accumulates of every Conv, ConvTranspose, MatMul and Gemm node of an
    ONNX file at input ``shape``, keyed by node name (an int8 weight is read through its
    DequantizeLinear); with ``aliases``, also by the output names an engine's fused node
    may carry instead (:func:`_fused_names`; then the values no longer sum to the total).

    The exported graph computes its padding from the input's shape at run time, so ONNX's
    shape inference alone cannot follow it: ONNX Runtime first folds those computations
    for the fixed ``shape`` (its basic, name-keeping optimisations), then shapes are
    inferred on the folded graph.
    """
    import onnx
    import onnxruntime as ort

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type
    with tempfile.TemporaryDirectory(prefix="edgeseg-flops-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.log_severity_level = 3  # its notes on initializers it folds away are not ours
        so.optimized_model_filepath = str(Path(tmp) / "static.onnx")
        for d, v in zip(dims.shape.dim, shape, strict=False):
            if d.dim_param:
                so.add_free_dimension_override_by_name(d.dim_param, int(v))
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        proto = onnx.load(so.optimized_model_filepath)
    for d, v in zip(proto.graph.input[0].type.tensor_type.shape.dim, shape, strict=False):
        d.Clear()
        d.dim_value = int(v)
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dd = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dd):
            shapes.setdefault(vi.name, [d.dim_value for d in dd])
    through = {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    out: dict[str, int] = {}
    for n in proto.graph.node:
        f = _node_flops(n, shapes, through)
        if f:
            out[n.name or n.output[0]] = f
            for name in _fused_names(proto.graph, n) if aliases else ():
                out.setdefault(name, f)
    return out


#: Ops an engine folds into the convolution before them (the fused node then carries the
#: last one's output name: ORT's NCHWc convs are named ``<output>_nchwc``).
_FOLDED = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Add", "Mul")


def _fused_names(graph: Any, node: Any) -> list[str]:
    """The output names a fused version of ``node`` may carry: its own, then those of the
    chain of activations (and a residual add) that consume it alone."""
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    names, tensor = [node.output[0]], node.output[0]
    while len(consumers.get(tensor, [])) == 1 and consumers[tensor][0].op_type in _FOLDED:
        tensor = consumers[tensor][0].output[0]
        names.append(tensor)
    return names


def _node_flops(node: Any, shapes: dict[str, list[int]], through: dict[str, str]) -> int:
    """2 x MACs of one node from its weight and output shapes (0 when unknown or not a
    multiply-accumulate op)."""

    def shape(name: str) -> list[int] | None:
        return shapes.get(name) or shapes.get(through.get(name, ""))

    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
        w, y, x = shape(node.input[1]), shape(node.output[0]), shape(node.input[0])
        if not w or not y or not x:
            return 0
        # Conv: every output pixel takes one weight tensor slice per output channel;
        # ConvTranspose: every input pixel scatters through the whole weight.
        pixels = (
            y[0] * int(np.prod(y[2:])) if node.op_type == "Conv" else x[0] * int(np.prod(x[2:]))
        )
        return 2 * int(np.prod(w)) * pixels
    if node.op_type in ("MatMul", "Gemm"):
        a, y = shape(node.input[0]), shape(node.output[0])
        if not a or not y:
            return 0
        k = a[-1] if node.op_type == "MatMul" or not _attr(node, "transA") else a[-2]
        return 2 * int(np.prod(y)) * k
    return 0


def _attr(node: Any, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


# ------------------------------------------------------------------ OpenVINO


def _ov_layers(
    path: Path, x: np.ndarray, threads: int, warmup: int, runs: int, engine: str
) -> list[LayerTime]:
    """Per-node medians from OpenVINO's performance counters; operations, kernel and
    precision from its runtime graph (the node's input and output shapes as compiled)."""
    import openvino as ov
    from edgeseg_runtime.backends import OPENVINO_PRECISION

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as e:
        raise EdgesegError(f"{path}: OpenVINO cannot read it ({type(e).__name__})") from None
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[engine],
        "INFERENCE_NUM_THREADS": threads,
        "PERF_COUNT": True,
    }
    try:
        model.reshape({model.inputs[0]: list(x.shape)})
        compiled = core.compile_model(model, "CPU", config)
    except RuntimeError as e:  # e.g. a pooling window larger than this size's feature map
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise EdgesegError(f"{path}: OpenVINO cannot run it at {x.shape[2:]}: {first}") from None
    req = compiled.create_infer_request()
    times: dict[str, list[float]] = {}
    for i in range(warmup + runs):
        req.infer({0: x})
        if i >= warmup:
            for info in req.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    times.setdefault(info.node_name, []).append(
                        info.real_time.total_seconds() * 1e3
                    )
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        name = op.get_friendly_name()
        if name not in times:
            continue
        rt = op.get_rt_info()
        prec = _rt(rt, "runtimePrecision").lower()
        rows.append(
            LayerTime(
                name=name,
                op=_rt(rt, "layerType"),
                kernel=_rt(rt, "primitiveType"),
                precision=_OV_PRECISION.get(prec, prec or "fp32"),
                ms=statistics.median(times[name]),
                flops=_ov_flops(op, _rt(rt, "layerType")),
            )
        )
    return rows


def _rt(info: Any, key: str) -> str:
    """A runtime-graph node's string attribute (``""`` when absent)."""
    return info[key].astype(str) if key in info else ""


def _ov_flops(op: Any, layer_type: str) -> int:
    """2 x MACs of a runtime-graph node from its compiled shapes: a (grouped) convolution's
    weight elements x output pixels, a deconvolution's x input pixels, a MatMul's."""

    def dims(port: Any) -> list[int]:
        ps = port.get_partial_shape()
        return [int(d) for d in ps.to_shape()] if ps.is_static else []

    ins, outs = [dims(i) for i in op.inputs()], [dims(o) for o in op.outputs()]
    if len(ins) < 2 or not ins[0] or not ins[1] or not outs or not outs[0]:
        return 0
    x, w, y = ins[0], ins[1], outs[0]
    if layer_type == "Convolution":
        return 2 * int(np.prod(w)) * y[0] * int(np.prod(y[2:]))
    if layer_type == "Deconvolution":
        return 2 * int(np.prod(w)) * x[0] * int(np.prod(x[2:]))
    if layer_type in ("MatMul", "FullyConnected"):
        return 2 * int(np.prod(y)) * x[-1]
    return 0
