"""Losses of the papers' recipes and the class weighting they use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "SegmentationLoss", "log_frequency_weights"]

#: Loss names a recipe may use.
LOSSES = ("ce", "nll")


def log_frequency_weights(frequencies: Sequence[float] | np.ndarray, c: float = 1.02) -> np.ndarray:
    """Class weights ``w_k = 1 / ln(c + p_k)`` from class frequencies ``p_k``.

    ENet (Paszke et al. 2016) uses ``c = 1.02``; the ESSNet thesis uses ``c = 1.10``. The
    weights are bounded by ``1 / ln(c)`` for a class that never occurs (about 50.5 for
    c = 1.02), so rare classes are boosted without exploding.

    Args:
        frequencies: fraction of (non-void) pixels of each class; normalised if they do
            not sum to 1.
        c: the offset, > 1.

    Raises:
        ValueError: if ``c <= 1`` or a frequency is negative, or all are zero.
    """
    p = np.asarray(frequencies, dtype=np.float64)
    if c <= 1:
        raise ValueError(f"c must be > 1 (ENet: 1.02, ESSNet thesis: 1.10), got {c}")
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError("class frequencies must be non-negative and not all zero")
    p = p / p.sum()
    return 1.0 / np.log(c + p)


class SegmentationLoss(nn.Module):
    """Pixel-wise classification loss on logits ``(B, K, H, W)`` and labels ``(B, H, W)``.

    ``"ce"`` is cross-entropy (Squeeze U-Net, ERFNet/ESSNet with class weights). ``"nll"`` is
    SegFast's log-softmax + NLL, which is the same function; it is kept as a name so that
    recipes can say what the paper said. Void pixels (``ignore_index``) contribute nothing
    and do not count in the mean.

    Args:
        name: ``"ce"`` or ``"nll"``.
        weight: optional per-class weights (length K), e.g. :func:`log_frequency_weights`.
        ignore_index: the void label id (CamVid: 11).
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.
    """

    def __init__(
        self,
        name: str = "ce",
        weight: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
        self.name = name
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        self.register_buffer("weight", w)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == "nll" and self.label_smoothing == 0:
            return F.nll_loss(
                F.log_softmax(logits, dim=1), target, self.weight, ignore_index=self.ignore_index
            )
        return F.cross_entropy(
            logits,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        weighted = "weighted" if self.weight is not None else "unweighted"
        return f"{self.name}, {weighted}, ignore_index={self.ignore_index}"
