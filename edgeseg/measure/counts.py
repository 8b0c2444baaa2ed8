"""Counts of a model: parameters, bytes, operations (three conventions), zipped size.

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
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


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


def stage_flops(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """FLOPs of each stage (``model.stages()``, else the top-level children) on ``x``, as
    :func:`count_flops` counts them; a stage run twice is charged twice."""
    stages = model.stages() if hasattr(model, "stages") else list(model.named_children())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    return {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name, _ in stages}


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


def zip_size(path: str | os.PathLike[str]) -> int:
    """Bytes of ``path`` compressed with zip (deflate, level 9), as seed 003 reports disk use."""
    with tempfile.TemporaryDirectory() as tmp:
        z = Path(tmp) / "a.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as f:
            f.write(path, Path(path).name)
        return z.stat().st_size
