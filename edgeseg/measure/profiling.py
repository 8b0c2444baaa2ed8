"""Honest numbers for one model on this CPU: size, operations, latency, memory, stage times.

Everything is measured, not estimated, except the operation counts
(:mod:`edgeseg.measure.counts`, three conventions). Timing goes through the one timer
(:mod:`edgeseg.measure.timing`): a fixed thread count, warm-up runs,
``torch.inference_mode``, both memory formats in interleaved rounds (so drift of the
machine hits both alike), the faster one named; peak memory comes from PyTorch's own
allocator events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from edgeseg.cpu import cpu_name
from edgeseg.defaults import INPUT_SIZE, NUM_CLASSES
from edgeseg.deploy.rewrites import inference_graph
from edgeseg.deploy.tuning import malloc_tuned
from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import (
    conv_weight_count,
    count_flops,
    paper_macs,
    param_count,
    stage_flops,
    state_dict_bytes,
    thesis_flops,
)
from edgeseg.measure.peak import measure_peak
from edgeseg.measure.timing import (
    MEMORY_FORMATS,
    StageTime,
    _summary,
    measure_latency,
    measure_peak_memory,
    measure_stage_times,
    num_threads,
    to_memory_format,
)
from edgeseg.models import create_model
from edgeseg.models.footprint import check_forward
from edgeseg.utils import parse_size, positive_int, thread_count

__all__ = [
    "MEMORY_FORMATS",
    "ProfileResult",
    "StageTime",
    "conv_weight_count",
    "count_flops",
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
    "to_memory_format",
]

log = logging.getLogger(__name__)


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
    malloc_tuned: bool = False  # glibc kept freed memory (edgeseg.deploy.rewrites.tune_malloc)
    thesis_flops: int = 0  # the ESSNet thesis' convention, conv MACs + 2 x transposed MACs
    peak_gflops: float | None = None  # this CPU's measured fp32 peak on ``threads`` threads
    peak_fraction: float | None = None  # the whole pass's GFLOP/s over ``peak_gflops``

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


# --------------------------------------------------------------------------- counting


# --------------------------------------------------------------------------- timing


# --------------------------------------------------------------------------- profile


def profile(
    model: nn.Module | str,
    input_size: str | tuple[int, int] = INPUT_SIZE,
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
    peak: bool = True,
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
            as any deployment runs it (:func:`edgeseg.deploy.rewrites.inference_graph`); counts
            are unaffected.
        name: label for the result (default: the registry name or class name).
        peak: set the pass and each stage against the CPU's measured fp32 peak (~1.5 s).

    Returns:
        A :class:`ProfileResult`.

    Raises:
        EdgesegError: on a bad size, thread count, format or model name.
    """
    h, w = parse_size(input_size, "input_size")
    batch_size, repeats = positive_int(batch_size, "batch_size"), positive_int(repeats, "repeats")
    threads_n = torch.get_num_threads() if threads is None else thread_count(threads, "threads")
    _check_formats(memory_formats)
    model, name = _named_model(model, name, num_classes)
    in_ch = int(getattr(model, "edgeseg_config", {}).get("in_channels", 3))
    check_forward(model, (batch_size, in_ch, h, w), False, "lower --size or --batch-size")
    x = torch.randn(batch_size, in_ch, h, w)
    timed = inference_graph(model) if fold_bn else model
    with num_threads(threads_n):
        with torch.inference_mode():
            k = int(model(x[:1]).shape[1])
        counts = _counts(model, x[:1])
        times = measure_latency(timed, x, warmup=warmup, repeats=repeats, formats=memory_formats)
        by_fmt = {f: _summary(t) for f, t in times.items()}
        best = min(by_fmt, key=lambda f: by_fmt[f]["median"])
        log.info("%s: %s", name, {f: round(v["median"], 2) for f, v in by_fmt.items()})
        stages, mem = _in_best_format(timed, x, best, stage_repeats or max(3, repeats // 2))
        top = measure_peak(threads_n, gemm=False, precisions=("fp32",)).of("fp32") if peak else None
    _attain(stages, stage_flops(model, x), top)
    whole = counts["flops"] * batch_size / by_fmt[best]["median"] / 1e6  # GFLOP/s
    return ProfileResult(
        model=name,
        input_size=(h, w),
        num_classes=k,
        **counts,
        latency_ms=by_fmt[best],
        memory_format=best,
        threads=threads_n,
        peak_memory_bytes=mem,
        stages=stages,
        latency_by_format=by_fmt,
        batch_size=batch_size,
        repeats=repeats,
        cpu=cpu_name(),
        bn_folded=fold_bn,
        malloc_tuned=malloc_tuned(),
        peak_gflops=top,
        peak_fraction=whole / top if top else None,
    )


def _check_formats(formats: Sequence[str]) -> None:
    bad = [f for f in formats if f not in MEMORY_FORMATS]
    if bad or not formats:
        raise EdgesegError(f"memory_formats: expected some of {list(MEMORY_FORMATS)}, got {bad}")


def _named_model(
    model: nn.Module | str, name: str | None, num_classes: int | None
) -> tuple[nn.Module, str]:
    """The eval-mode network (built from a registry name) and its label."""
    if isinstance(model, str):
        name = name or model
        model = create_model(model, num_classes=num_classes or NUM_CLASSES)
    name = name or getattr(model, "edgeseg_config", {}).get("name") or type(model).__name__
    return model.eval(), name


def _attain(stages: list[StageTime], flops: dict[str, int], peak: float | None) -> None:
    """Each stage's operations, GFLOP/s and share of the CPU's fp32 ``peak``."""
    for st in stages:
        st.flops = flops.get(st.name, 0)
        st.gflops = st.flops / st.ms / 1e6 if st.ms > 0 else 0.0
        st.peak_fraction = st.gflops / peak if peak else None


def _in_best_format(
    model: nn.Module, x: torch.Tensor, fmt: str, repeats: int
) -> tuple[list[StageTime], int]:
    """``(time per stage, peak bytes)`` of the network in its fastest memory format."""
    best_model, best_x = to_memory_format(model, x, fmt)
    stages, _ = measure_stage_times(best_model, best_x, repeats=repeats)
    return stages, measure_peak_memory(best_model, best_x)


def _counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """The size and operation counts of :class:`ProfileResult` for input ``x``."""
    flops = count_flops(model, x)
    return {
        "params": param_count(model),
        "conv_weights": conv_weight_count(model),
        "size_bytes": state_dict_bytes(model),
        "macs": flops // 2,
        "flops": flops,
        "paper_macs": paper_macs(model, x),
        "thesis_flops": thesis_flops(model, x),
    }
