"""Honest numbers for a model on this CPU: size, operations, latency, memory, stage times.

Everything is measured, not estimated, except the two operation counts:

- ``macs`` / ``flops`` come from :class:`torch.utils.flop_counter.FlopCounterMode`, which
  charges a conv at its output pixels and a transposed conv at its input pixels, grouped
  convs at their real cost; ``flops = 2 * macs``. They are counted on the padded input the
  network really runs on.
- ``paper_macs`` is the Squeeze U-Net paper's own convention, ``2 x W_l x output pixels``
  summed over conv and transposed-conv layers ``l`` (so roughly FLOPs, with transposed
  convs charged at their output). It is charged at the nominal input size (the padding to
  the network stride is not counted), which is how the paper's "88 B" for Squeeze U-Net
  and "287 B" for U-Net at 360x480 are reproduced.
- ``thesis_flops`` is the ESSNet thesis' (seed 002) "GFLOPs": conv MACs (at output
  pixels) plus *twice* the transposed-conv MACs (at input pixels), norms and activations
  not counted. It reproduces the thesis' Table 3.5 at 512x1024 within 0.4 % (tested).

Latency uses a fixed thread count, warm-up runs, ``torch.inference_mode`` and repeated
runs; both memory formats are timed in interleaved rounds (so drift of the machine hits
both alike) and the faster one is named. Peak memory comes from PyTorch's own allocator
events (``torch.profiler`` with ``profile_memory=True``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.errors import EdgesegError
from edgeseg.inference import inference_graph, malloc_tuned
from edgeseg.utils import parse_size, positive_int

__all__ = [
    "MEMORY_FORMATS",
    "ProfileResult",
    "StageTime",
    "conv_weight_count",
    "count_flops",
    "cpu_isa",
    "cpu_name",
    "measure_latency",
    "measure_peak_memory",
    "measure_stage_times",
    "num_threads",
    "paper_macs",
    "param_count",
    "profile",
    "state_dict_bytes",
    "thesis_flops",
    "time_interleaved",
    "to_memory_format",
]

log = logging.getLogger(__name__)

#: Memory formats the latency measurement tries.
MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
}

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


@dataclass
class StageTime:
    """Time of one stage of a network (median over the timed runs)."""

    name: str  # stage name, e.g. "ds1"
    ms: float  # median milliseconds
    share: float  # fraction of the whole forward pass timed in the same runs


@dataclass
class ProfileResult:
    """Everything :func:`profile` measured. ``to_dict()`` gives the stable JSON form.

    JSON keys (stable): ``model, input_size, num_classes, params, conv_weights, size_bytes,
    macs, flops, paper_macs, latency_ms {median, p90}, memory_format, threads,
    peak_memory_bytes, stages [{name, ms, share}]``; extra keys may be added, never renamed.
    """

    model: str  # registry name or class name
    input_size: tuple[int, int]  # (H, W) of the input
    num_classes: int  # K, output channels
    params: int  # trainable parameters
    conv_weights: int  # weights of conv / transposed-conv layers (no biases, no norms)
    size_bytes: int  # bytes of the saved fp32 state_dict (torch.save)
    macs: int  # multiply-accumulates, torch.utils.flop_counter (flops / 2)
    flops: int  # floating-point operations, torch.utils.flop_counter
    paper_macs: int  # the Squeeze U-Net paper's convention, 2 x W_l x output pixels
    latency_ms: dict[str, float]  # {"median", "p90"} in the faster memory format
    memory_format: str  # the faster of "contiguous" and "channels_last"
    threads: int  # intra-op threads used for timing
    peak_memory_bytes: int  # weights + input + peak allocator bytes during one inference
    stages: list[StageTime]  # per-stage time, in execution order
    latency_by_format: dict[str, dict[str, float]] = field(default_factory=dict)
    batch_size: int = 1  # images per timed forward pass
    repeats: int = 0  # timed runs per memory format
    torch_version: str = torch.__version__
    cpu: str = ""  # CPU model name, from /proc/cpuinfo where available
    bn_folded: bool = False  # BatchNorm folded into convs for the timing (outputs unchanged)
    malloc_tuned: bool = False  # glibc kept freed memory (edgeseg.inference.tune_malloc)
    thesis_flops: int = 0  # the ESSNet thesis' convention, conv MACs + 2 x transposed MACs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


# --------------------------------------------------------------------------- counting


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_weight_count(model: nn.Module) -> int:
    """Number of conv and transposed-conv weights (biases and norm layers excluded)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, _CONV_TYPES))


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes that ``torch.save(model.state_dict())`` writes (buffers included)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x``, counted by ``torch.utils.flop_counter``."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _pixels(t: torch.Tensor) -> int:
    return int(np.prod(t.shape[2:]))


def _charge_convs(
    model: nn.Module, x: torch.Tensor, charge: Callable[[nn.Module, torch.Tensor, Any], int]
) -> int:
    """Sum ``charge(layer, input, output)`` over every conv / transposed-conv call on ``x``."""
    total = 0

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += charge(mod, inp[0], out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONV_TYPES)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def paper_macs(model: nn.Module, x: torch.Tensor) -> int:
    """The Squeeze U-Net paper's "MACs": sum over conv layers of ``2 x W_l x output pixels``.

    Charged at the nominal input size: feature maps of a network that pads its input to
    ``output_stride`` are scaled by ``H*W / (H_pad*W_pad)``, so the count does not depend
    on the padding (the paper quotes 360x480 although 360 is not a multiple of 16).
    """
    # 2 x weights x output pixels, for convs and transposed convs alike.
    total = _charge_convs(model, x, lambda m, _i, out: 2 * m.weight.numel() * _pixels(out))
    stride = int(getattr(model, "output_stride", 1))
    h, w = x.shape[-2], x.shape[-1]
    hp, wp = -(-h // stride) * stride, -(-w // stride) * stride
    return round(total * (h * w) / (hp * wp) / x.shape[0])


def thesis_flops(model: nn.Module, x: torch.Tensor) -> int:
    """The ESSNet thesis' "FLOPs": conv MACs + 2 x transposed-conv MACs, per image.

    A conv is charged ``weights x output pixels``, a transposed conv ``weights x input
    pixels`` (the MACs it really does), and the latter counted twice, which is what
    reproduces the thesis' Table 3.5 (ERFNet 27.705 G, ESSNet-D 5.773 G at 512x1024).
    Charged at the padded size the network runs on (the thesis' sizes divide evenly).
    """

    def charge(mod: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
        if isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            return 2 * mod.weight.numel() * _pixels(inp)
        return mod.weight.numel() * _pixels(out)

    total = _charge_convs(model, x, charge)
    return total // x.shape[0]


# --------------------------------------------------------------------------- timing


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads (``None``: leave as is); restore after."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _summary(ms: Sequence[float]) -> dict[str, float]:
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90))}


def to_memory_format(model: nn.Module, x: torch.Tensor, fmt: str) -> tuple[nn.Module, torch.Tensor]:
    """``(model, x)`` in memory format ``fmt`` (channels_last: a converted copy of the model)."""
    if fmt == "contiguous":
        return model, x.contiguous()
    m = copy.deepcopy(model).to(memory_format=MEMORY_FORMATS[fmt])
    return m, x.contiguous(memory_format=MEMORY_FORMATS[fmt])


def measure_latency(
    model: nn.Module,
    x: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 20,
    formats: Sequence[str] = ("contiguous", "channels_last"),
) -> dict[str, list[float]]:
    """Milliseconds of each forward pass, per memory format, in interleaved rounds.

    Each round runs every format once (the order alternates between rounds), so slow
    drift of the machine affects all formats alike. Runs under ``inference_mode`` with the
    current thread setting (see :func:`num_threads`).

    Returns:
        ``{format: [ms of each timed run]}``.
    """
    variants = {f: to_memory_format(model, x, f) for f in formats}
    return time_interleaved(variants, warmup=warmup, repeats=repeats)


def time_interleaved(
    runs: dict[Any, tuple[Any, Any]], *, warmup: int = 2, repeats: int = 10
) -> dict[Any, list[float]]:
    """Milliseconds of ``fn(x)`` for each ``key: (fn, x)``, timed in interleaved rounds.

    Every round runs each entry once, in an order that alternates between rounds, so a
    slow drift of the machine (thermal, another process) hits all entries alike and
    per-round ratios stay meaningful. Runs under ``torch.inference_mode``.

    Returns:
        ``{key: [ms of each timed run]}`` (``repeats`` values each).
    """
    times: dict[Any, list[float]] = {k: [] for k in runs}
    keys = list(runs)
    with torch.inference_mode():
        for fn, xi in runs.values():
            for _ in range(warmup):
                fn(xi)
        for r in range(repeats):
            for k in keys if r % 2 == 0 else keys[::-1]:
                fn, xi = runs[k]
                t0 = time.perf_counter()
                fn(xi)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def measure_stage_times(
    model: nn.Module, x: torch.Tensor, *, warmup: int = 1, repeats: int = 10
) -> tuple[list[StageTime], float]:
    """Median time of each stage and of the whole forward pass, timed in the same runs.

    Stages are ``model.stages()`` for edgeseg models, else the top-level children. The
    share of a stage is its median over the median of the whole pass; what the stages do
    not cover (padding, cropping) is the remainder.

    Returns:
        ``(stages, total_ms)``.
    """
    stages = model.stages() if hasattr(model, "stages") else list(model.named_children())
    starts: dict[str, float] = {}
    runs: dict[str, list[float]] = {name: [] for name, _ in stages}
    acc: dict[str, float] = {}

    def pre(name: str):
        def fn(_m: nn.Module, _inp: Any) -> None:
            starts[name] = time.perf_counter()

        return fn

    def post(name: str):
        def fn(_m: nn.Module, _inp: Any, _out: Any) -> None:
            # A stage module may run more than once per pass: accumulate.
            acc[name] = acc.get(name, 0.0) + (time.perf_counter() - starts[name]) * 1e3

        return fn

    handles = []
    for name, mod in stages:
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post(name)))
    totals: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                acc.clear()
                t0 = time.perf_counter()
                model(x)
                totals.append((time.perf_counter() - t0) * 1e3)
                for name in runs:
                    runs[name].append(acc.get(name, 0.0))
    finally:
        for h in handles:
            h.remove()
    total = float(statistics.median(totals))
    result = [
        StageTime(name, float(statistics.median(ms)), float(statistics.median(ms)) / total)
        for name, ms in runs.items()
    ]
    return result, total


def measure_peak_memory(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of one inference: weights + input + the allocator's peak during the pass.

    The pass's own allocations (activations, workspaces, the output) come from PyTorch's
    allocator events recorded by ``torch.profiler(profile_memory=True)``, replayed in time
    order; the running sum's maximum is the peak.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    # Kineto prints a "profiler_start/stop" line to stderr at each use unless told not to;
    # it reads this when the profiler first starts. A user's own setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "99")

    resident = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    resident += x.numel() * x.element_size()
    with torch.inference_mode():
        model(x)  # warm-up: one-time allocations (e.g. packed weights) are not per-inference
        with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = model(x)
            del out
    events = prof.profiler.kineto_results.events() if prof.profiler is not None else []
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in deltas:
        current += nbytes
        peak = max(peak, current)
    return int(resident + peak)


#: (cpuinfo flags, label) from the widest: what int8 and fp32 kernels can use. VNNI does an
#: int8 multiply-accumulate in one instruction; without it (plain AVX2) int8 convolutions
#: gain far less over fp32, so int8 speed-ups measured on one CPU do not carry to another.
_ISA_LEVELS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"amx_int8"}), "AMX-INT8"),
    (frozenset({"avx512f", "avx512_vnni"}), "AVX-512 VNNI"),
    (frozenset({"avx512f"}), "AVX-512"),
    (frozenset({"avx2", "avx_vnni"}), "AVX2 + AVX-VNNI"),
    (frozenset({"avx2"}), "AVX2"),
    (frozenset({"asimddp"}), "NEON dot-product"),
    (frozenset({"asimd"}), "NEON"),
)


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest SIMD level of this CPU that matters for conv kernels, e.g. ``"AVX2"``.

    Args:
        flags: CPU feature flags; read from ``/proc/cpuinfo`` when omitted.

    Returns:
        A label from :data:`_ISA_LEVELS`, or ``""`` when nothing is known.
    """
    if flags is None:
        flags = set()
        with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    return next((label for need, label in _ISA_LEVELS if need <= flags), "")


def cpu_name() -> str:
    """The CPU's model name and SIMD level, e.g. ``"AMD EPYC [AVX2]"``.

    The model name comes from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere). The
    SIMD level is added because virtual machines often report a bare family name
    ("AMD EPYC") for CPUs whose int8 speed differs by 2x.
    """
    name = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine()
    isa = cpu_isa()
    return f"{name} [{isa}]" if isa else name


# --------------------------------------------------------------------------- profile


def profile(
    model: nn.Module | str,
    input_size: str | tuple[int, int] = (360, 480),
    *,
    num_classes: int | None = None,
    threads: int | None = None,
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    stage_repeats: int | None = None,
    memory_formats: Sequence[str] = ("contiguous", "channels_last"),
    fold_bn: bool = True,
    name: str | None = None,
) -> ProfileResult:
    """Profile a model on this CPU.

    Args:
        model: an ``nn.Module`` or a registry name (built with ``num_classes``).
        input_size: ``(H, W)`` or ``"HxW"``.
        num_classes: K for a registry name (default 11, CamVid); for a module it is read
            from the output.
        threads: intra-op threads for the timing (default: PyTorch's current setting).
        batch_size: images per forward pass.
        warmup: untimed runs per memory format before timing.
        repeats: timed runs per memory format.
        stage_repeats: timed runs for the per-stage times (default ``max(3, repeats // 2)``).
        memory_formats: formats to try; the faster is reported.
        fold_bn: time the network with BatchNorm folded into the convs (and folds fused),
            as any deployment runs it (:func:`edgeseg.inference.inference_graph`); counts
            are unaffected.
        name: label for the result (default: the registry name or class name).

    Returns:
        A :class:`ProfileResult`.

    Raises:
        EdgesegError: on a bad size, thread count, format or model name.
    """
    from edgeseg.models import create_model

    h, w = parse_size(input_size, "input_size")
    batch_size = positive_int(batch_size, "batch_size")
    repeats = positive_int(repeats, "repeats")
    threads_n = torch.get_num_threads() if threads is None else positive_int(threads, "threads")
    bad = [f for f in memory_formats if f not in MEMORY_FORMATS]
    if bad or not memory_formats:
        raise EdgesegError(f"memory_formats: expected some of {list(MEMORY_FORMATS)}, got {bad}")
    if isinstance(model, str):
        name = name or model
        model = create_model(model, num_classes=num_classes or 11)
    name = name or getattr(model, "edgeseg_config", {}).get("name") or type(model).__name__
    model = model.eval()
    in_ch = int(getattr(model, "edgeseg_config", {}).get("in_channels", 3))
    x = torch.randn(batch_size, in_ch, h, w)

    timed = inference_graph(model) if fold_bn else model
    with num_threads(threads_n):
        with torch.inference_mode():
            k = int(model(x[:1]).shape[1])
        flops = count_flops(model, x[:1])
        pmacs = paper_macs(model, x[:1])
        tflops = thesis_flops(model, x[:1])
        times = measure_latency(timed, x, warmup=warmup, repeats=repeats, formats=memory_formats)
        by_fmt = {f: _summary(t) for f, t in times.items()}
        best = min(by_fmt, key=lambda f: by_fmt[f]["median"])
        log.info("%s: %s", name, {f: round(v["median"], 2) for f, v in by_fmt.items()})
        best_model, best_x = to_memory_format(timed, x, best)
        stages, _ = measure_stage_times(
            best_model, best_x, repeats=stage_repeats or max(3, repeats // 2)
        )
        peak = measure_peak_memory(best_model, best_x)

    return ProfileResult(
        model=name,
        input_size=(h, w),
        num_classes=k,
        params=param_count(model),
        conv_weights=conv_weight_count(model),
        size_bytes=state_dict_bytes(model),
        macs=flops // 2,
        flops=flops,
        paper_macs=pmacs,
        latency_ms=by_fmt[best],
        memory_format=best,
        threads=threads_n,
        peak_memory_bytes=peak,
        stages=stages,
        latency_by_format=by_fmt,
        batch_size=batch_size,
        repeats=repeats,
        cpu=cpu_name(),
        bn_folded=fold_bn,
        malloc_tuned=malloc_tuned(),
        thesis_flops=tflops,
    )
