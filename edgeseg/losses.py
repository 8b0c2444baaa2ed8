"""Losses of the papers' recipes and the class weighting they use."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "SegmentationLoss", "distillation_loss", "log_frequency_weights"]

#: Loss names a recipe may use.
LOSSES = ("ce", "nll", "ohem")


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
    recipes can say what the paper said. ``"ohem"`` is online hard example mining (as
    BiSeNet's and MMSegmentation's OHEM): the mean over the pixels whose probability of
    their true class is below ``ohem_thresh``, and at least the ``ohem_min_kept`` share of
    the valid pixels with the largest losses, so that easy road and sky pixels stop
    dominating the gradient. Void pixels (``ignore_index``) contribute nothing and do not
    count in the mean.

    Args:
        name: ``"ce"``, ``"nll"`` or ``"ohem"``.
        weight: optional per-class weights (length K), e.g. :func:`log_frequency_weights`.
        ignore_index: the void label id (CamVid: 11).
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.
        ohem_thresh: ``"ohem"``: pixels with a true-class probability below it are hard.
        ohem_min_kept: ``"ohem"``: the share of valid pixels always kept (the hardest).
    """

    def __init__(
        self,
        name: str = "ce",
        weight: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        ohem_thresh: float = 0.7,
        ohem_min_kept: float = 1 / 16,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
        self.name = name
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.ohem_thresh, self.ohem_min_kept = ohem_thresh, ohem_min_kept
        w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        self.register_buffer("weight", w)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == "ohem":
            return self._ohem(logits, target)
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

    def _ohem(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-pixel losses (B*H*W,), void pixels at 0; the hard ones lose more than
        # -log(thresh). Unweighted like the references' OHEM when no weight is given.
        loss = F.cross_entropy(
            logits,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        ).flatten()
        valid = int((target != self.ignore_index).sum())
        if valid == 0:
            return loss.sum() * 0.0  # keeps the graph; nothing to learn from
        n_min = max(1, int(self.ohem_min_kept * valid))
        hard = loss[loss > -math.log(self.ohem_thresh)]
        if hard.numel() < n_min:
            hard = torch.topk(loss, n_min).values
        return hard.mean()

    def extra_repr(self) -> str:
        weighted = "weighted" if self.weight is not None else "unweighted"
        return f"{self.name}, {weighted}, ignore_index={self.ignore_index}"


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 4.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise knowledge distillation (Hinton et al. 2015, as in Liu et al.'s
    *Structured Knowledge Distillation for Semantic Segmentation*, CVPR 2019):
    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` per pixel, averaged over
    the ``valid`` pixels (void excluded).

    Args:
        student: logits ``(B, K, H, W)`` (gradients flow).
        teacher: logits ``(B, K, H, W)`` of the same images (constants).
        temperature: T; the ``T^2`` factor keeps the gradient scale independent of it.
        valid: ``(B, H, W)`` mask of the pixels that count; all when omitted.
    """
    t = temperature
    log_p = F.log_softmax(student / t, dim=1)
    q = F.softmax(teacher / t, dim=1)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(1)  # (B, H, W)
    if valid is not None:
        kl = kl[valid]
    return kl.mean() * t * t
