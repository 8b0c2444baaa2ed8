"""The model contract every edgeseg network follows.

NCHW float in, logits ``(B, K, H, W)`` at the input's own size out, for any ``H`` and
``W``. Networks that downsample by ``output_stride`` see their input zero-padded at the
bottom and right to the next multiple of it and their logits cropped back, so 360x480
works although 360 is not a multiple of 16, and no skip concatenation ever meets two
sizes. The padding is computed from the tensor's shape, so it stays symbolic under
``torch.export`` / ONNX export with dynamic height and width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """Base class: pad to the network stride, run :meth:`forward_padded`, crop back.

    Subclasses set :attr:`output_stride` (the product of all downsampling factors) and
    implement :meth:`forward_padded` for inputs whose sides are multiples of it. The
    top-level children, in the order they run, are the network's *stages*: the profiler
    times each one (see :meth:`stages`).
    """

    #: Input sides are padded to a multiple of this before :meth:`forward_padded`.
    output_stride: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for an input ``(B, C, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        y = self.forward_padded(self.pad(x))
        return y[:, :, :h, :w]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` zero-padded at the bottom and right to a multiple of the stride."""
        h, w = x.shape[-2], x.shape[-1]
        s = self.output_stride
        if s == 1:
            return x
        # Padded sides written as s * ceil(side / s): under torch.export the symbolic
        # shape solver can then prove every feature map divides evenly (a form like
        # side + (-side) % s is not recognised as a multiple of s).
        pad_h = (h + s - 1) // s * s - h
        pad_w = (w + s - 1) // s * s - w
        # F.pad's order is (left, right, top, bottom) for the last two dims.
        return F.pad(x, (0, pad_w, 0, pad_h))

    def forward_aux(
        self, x: torch.Tensor, heads: nn.ModuleDict
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Training only: the logits and each auxiliary head's logits, all ``(B, K, H, W)``.

        A model with auxiliary (deep-supervision, booster) heads implements
        ``forward_taps(x_padded) -> (logits, {tap: features})`` and ``aux_heads() ->
        nn.ModuleDict`` keyed by tap; the heads live outside the model (the trainer owns
        them), so ``forward``, the state dict and every export stay the plain network.
        """
        h, w = x.shape[-2], x.shape[-1]
        xp = self.pad(x)
        y, taps = self.forward_taps(xp)  # type: ignore[operator]  # see the docstring
        size = xp.shape[-2:]
        aux = [
            F.interpolate(head(taps[name]), size=size, mode="bilinear", align_corners=False)
            for name, head in heads.items()
        ]
        return y[:, :, :h, :w], [a[:, :, :h, :w] for a in aux]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Forward pass on an input whose height and width are multiples of the stride."""
        raise NotImplementedError

    def stages(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of each stage, in execution order, for per-stage timing."""
        return list(self.named_children())


class TappedSegmentationModel(SegmentationModel):
    """A model with training-only auxiliary (deep-supervision, booster) heads.

    Subclasses implement :meth:`forward_taps` (the logits and the features each head reads)
    and :meth:`aux_heads`; ``forward`` stays the plain logits. The trainer builds the heads
    once and owns them (:meth:`SegmentationModel.forward_aux`), so they are never part of
    the model's state dict, its ``forward`` or an export.
    """

    def forward_taps(  # pragma: no cover - abstract
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits (B, K, H, W), {tap: features})`` for a padded input ``x``."""
        raise NotImplementedError

    def aux_heads(self) -> nn.ModuleDict:  # pragma: no cover - abstract
        """New auxiliary heads, keyed by the tap each reads; each maps its features to K
        channels (upsampled to the input's size by :meth:`forward_aux`)."""
        raise NotImplementedError

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_taps(x)[0]
