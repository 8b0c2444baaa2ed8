"""Inference-time settings that change speed, never outputs.

- :func:`tune_malloc` keeps freed memory inside the process. glibc's default gives large
  blocks back to the OS at every ``free`` and page-faults them in again at the next
  allocation; for a segmentation network whose full-resolution activations are tens of MB
  that is 20-30 % of a CPU forward pass on a 2-core machine. Intel's PyTorch CPU guide
  recommends jemalloc/tcmalloc for the same reason; this does it with glibc, at run time.
- :func:`compile_for_inference`: ``torch.compile`` with frozen weights for one input size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


_MALLOC_TUNED = False


def tune_malloc(mmap_threshold: int = 32 * 1024 * 1024, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS.

    Raises glibc's mmap threshold to its maximum (32 MiB on 64-bit) and its trim
    threshold to 1 GiB, for this process. Safe to call more than once.

    Returns:
        True if the settings were applied (glibc found), False otherwise (e.g. macOS,
        musl), in which case nothing changed.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    ok = bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold)
    )
    _MALLOC_TUNED = ok
    return ok


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has been applied in this process."""
    return _MALLOC_TUNED


def compile_for_inference(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.compile`` (Inductor) with weight freezing, compiled on ``example`` now.

    Freezing lets Inductor treat the weights as constants: BatchNorm is folded, ReLU is
    fused into the oneDNN convolutions and weights are pre-packed. The model must be in
    eval mode and is used without gradients. Compilation happens here, on ``example``'s
    shape and memory format (tens of seconds on 2 cores), so that later calls are timed
    without it; another input shape triggers a recompile.

    Returns:
        The compiled module.
    """
    import torch._inductor.config as inductor_config

    if model.training:
        raise ValueError("compile_for_inference needs a model in eval mode (call model.eval())")
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(model)
        compiled(example)
    return compiled
