"""The one timer: latency with a fixed thread count, warm-up runs, ``torch.inference_mode``
and repeated runs; interleaved rounds for side-by-side comparisons (so drift of the
machine hits every candidate alike); per-stage times; peak memory from PyTorch's own
allocator events (``torch.profiler`` with ``profile_memory=True``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.engine.checkpoint import load_model
from edgeseg.pretrained import pretrained_path

log = logging.getLogger(__name__)


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
    runs: dict[Any, tuple[Any, Any]], *, warmup: int = 2, repeats: int = 10, settle: int = 0
) -> dict[Any, list[float]]:
    """Milliseconds of ``fn(x)`` for each ``key: (fn, x)``, timed in interleaved rounds.

    Every round runs each entry once, in an order that alternates between rounds, so a
    slow drift of the machine (thermal, another process) hits all entries alike and
    per-round ratios stay meaningful. Runs under ``torch.inference_mode``. ``settle``
    untimed runs of an entry precede each timed one: engines whose idle threads spin for
    a while after a run (ONNX Runtime's) would otherwise slow whichever entry runs next.

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
                for _ in range(settle):
                    fn(xi)
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


#: Memory formats the latency measurement tries.
MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


@dataclass
class StageTime:
    """Time of one stage of a network (median over the timed runs)."""

    name: str  # stage name, e.g. "ds1"
    ms: float  # median milliseconds
    share: float  # fraction of the whole forward pass timed in the same runs
    flops: int = 0  # its operations (2 x MACs), as edgeseg.measure.counts counts them
    gflops: float = 0.0  # flops / ms: what the stage attains
    peak_fraction: float | None = None  # gflops over the CPU's measured fp32 peak


def pretrained_latency(
    names: Sequence[str], size: tuple[int, int], threads: int, repeats: int = 10
) -> dict[str, float]:
    """Median milliseconds of one forward pass of each shipped weights here, as
    :class:`~edgeseg.Segmenter` runs them by default (PyTorch, channels-last), on a
    ``(1, 3, H, W)`` input: the figure ``edgeseg models --pretrained --latency`` shows."""
    out: dict[str, float] = {}
    with num_threads(threads):
        for name in names:
            model, _ = load_model(pretrained_path(name))
            x = torch.randn(1, 3, *size)
            ms = measure_latency(model.eval(), x, repeats=repeats, formats=("channels_last",))
            out[name] = float(statistics.median(ms["channels_last"]))
    return out
