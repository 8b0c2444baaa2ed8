"""Memory a network needs, known before any of it is allocated.

A request that cannot fit (a million classes, a width of 10^5, an 8192x8192 crop, a batch
of a million) would otherwise allocate until the kernel kills the process, or fail deep in
an allocator with a traceback. Here the parameters are counted on PyTorch's ``meta``
device (shapes only) and the activations of one forward pass are measured under a
``FakeTensorMode`` (every output's shape, no storage), then set against the memory this
machine has available; a request that cannot fit is one line naming what to lower.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgeseg.errors import EdgesegError

__all__ = [
    "activation_bytes",
    "available_bytes",
    "check_fits",
    "check_forward",
    "check_params",
    "param_bytes",
]

log = logging.getLogger(__name__)

GB = 2**30
#: What :func:`param_bytes` reports for a model one of whose tensors cannot even be sized.
OVERFLOW = 2**63


def available_bytes() -> int | None:
    """Memory a new allocation can get: the kernel's ``MemAvailable`` and this process's
    address-space limit (``RLIMIT_AS``), whichever is smaller; ``None`` if unknown."""
    found = []
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        found.append(soft)
    return min(found) if found else None


def param_bytes(build: Callable[[], nn.Module]) -> int | None:
    """Bytes of the parameters and buffers ``build()`` would allocate, counted on the
    ``meta`` device; ``None`` when the builder cannot run there."""
    try:
        with torch.device("meta"), _quiet():
            model = build()
    except RuntimeError as e:
        if "overflow" in str(e):  # one tensor alone has more than 2**63 bytes
            return OVERFLOW
        return None
    except Exception:  # a builder that needs real tensors (e.g. loads weights): no count
        return None
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def activation_bytes(model: nn.Module, shape: Sequence[int], training: bool = False) -> int | None:
    """A lower bound of the activation memory of one forward pass at input ``shape``
    (``(B, C, H, W)``): training keeps every layer's output for the backward pass (their
    sum); inference holds at least the largest layer's input and output (twice the
    largest output), and an eighth of all outputs (the least measured on the zoo).
    Measured with fake tensors: nothing is allocated. ``None`` when the model cannot run
    on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    sizes: list[int] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    # A training-mode pass counts batches in BatchNorm buffers on the real tensors: they
    # are put back as they were, so measuring leaves the model exactly as it was.
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    live = _LiveBytes()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad(), _quiet():
            x = torch.empty(*shape)
            with live:
                hook(model, None, model(x))  # the logits, made in forward()
    except Exception:  # data-dependent control flow etc.: no estimate, no refusal
        return None
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    if not sizes:
        return None
    # Measured in eager inference at 1536x2048 (peak RSS growth / sum of all outputs):
    # 0.13 (ERFNet, DDRNet-23-slim) to 0.26 (U-Net, SegFast); skip connections keep
    # several maps alive, so the largest layer alone understates U-shaped nets. The
    # tensors alive at once (every op's output until it is freed), plus a quarter for the
    # allocator and the conv library's scratch, cover those: SegFast 1.3 GB alive, 1.52
    # measured; U-Net 4.9 and 5.0. The fixed share covers nets whose library overhead
    # dominates (ERFNet: 0.29 alive, 0.66 measured).
    if training:
        return sum(sizes)
    return max(live.peak * 5 // 4, 2 * max(sizes), sum(sizes) // 8)


class _LiveBytes(TorchDispatchMode):
    """The peak bytes of tensors alive at once during a (fake) forward pass: every op's
    output counts from its creation until Python frees it (an in-place result is the same
    tensor, counted once; a view is counted as its own, which errs on the safe side)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0
        self._alive: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self._alive.discard(key)
        self.now -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or id(t) in self._alive:
                continue
            n = t.numel() * t.element_size()
            self._alive.add(id(t))
            self.now += n
            self.peak = max(self.peak, self.now)
            weakref.finalize(t, self._free, id(t), n)
        return out


def check_fits(need: int | None, what: str, advice: str) -> None:
    """Refuse ``need`` bytes when this machine has less available, in one line.

    Args:
        need: estimated bytes (``None``: unknown, accepted).
        what: what needs them, e.g. ``"segfast at 8192x8192, batch 2, training"``.
        advice: what to lower, e.g. ``"lower data.crop_size or train.batch_size"``.
    """
    have = available_bytes()
    if need is None or have is None or need <= have:
        return
    amount = "more than 2**63 bytes" if need >= OVERFLOW else f"at least {need / GB:.1f} GB"
    raise EdgesegError(
        f"{what} needs {amount} of memory and this machine has {have / GB:.1f} GB "
        f"available: {advice}"
    )


#: Inference on at most this many pixels (batch x height x width) by a zoo network with
#: its default options is known to fit (2x the largest activation stays under 1 GB).
_SMALL_PIXELS = 2**20


def check_forward(model: nn.Module, shape: Sequence[int], training: bool, advice: str) -> None:
    """:func:`check_fits` for one forward pass of ``model`` at ``shape`` (``(B, C, H,
    W)``), training or not; a plain small inference is not measured."""
    cfg = getattr(model, "edgeseg_config", None) or {}
    b, _, h, w = shape
    plain = not cfg.get("kwargs") and int(cfg.get("num_classes", 0)) <= 1024 and cfg
    if not training and plain and b * h * w <= _SMALL_PIXELS:
        return
    name = cfg.get("name", type(model).__name__)
    what = f"{name} at {h}x{w}, batch {b}, {'training' if training else 'inference'}"
    check_fits(activation_bytes(model, shape, training), what, advice)


def check_params(build: Callable[[], nn.Module], what: str) -> None:
    """:func:`check_fits` for the parameters ``build()`` would allocate."""
    check_fits(param_bytes(build), what, "choose smaller model options")


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence warnings the fake runs may raise (they are not the user's)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)
