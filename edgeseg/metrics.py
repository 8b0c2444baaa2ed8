"""Segmentation metrics: pure functions of one confusion matrix.

Convention: ``cm[i, j]`` counts pixels whose ground truth is class ``i`` and whose
prediction is class ``j`` (rows: truth, columns: prediction). Void pixels (the dataset's
ignore id) never enter the matrix. From it (spec section 6):

- pixel accuracy ``PA = sum_i cm[i,i] / sum_ij cm[i,j]``;
- per-class accuracy (TP rate, recall) ``cm[i,i] / sum_j cm[i,j]``; mean pixel accuracy is
  its mean over classes present in the ground truth;
- ``IoU_i = cm[i,i] / (sum_j cm[i,j] + sum_j cm[j,i] - cm[i,i])``; mIoU is the mean over
  classes present in the ground truth *or* the prediction. A class absent from both has
  IoU NaN and is left out of the mean: it was neither missed nor hallucinated, and
  scoring it 1.0 (as SegFast's released code does) inflates mIoU;
- FP/TP ratio ``sum_j cm[j,i] - cm[i,i]`` over ``cm[i,i]`` (the Squeeze U-Net paper's
  Table 7): NaN when the class has neither, ``inf`` when it has false positives only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "batch_statistics",
    "confusion_matrix",
    "fp_tp_ratio",
    "iou_per_class",
    "mean_iou",
    "mean_pixel_accuracy",
    "pixel_accuracy",
    "segmentation_metrics",
    "tp_rate",
]


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Confusion matrix ``(K, K)`` of int64 counts (rows truth, columns prediction).

    Args:
        pred: predicted class ids, any shape.
        target: ground-truth ids, same shape. Pixels equal to ``ignore_index`` are skipped.
        num_classes: K.
        ignore_index: the void id, or None.

    Raises:
        ValueError: if shapes differ, or a non-void id is outside ``[0, K)``.
    """
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.numel()} pixels, target {t.numel()}")
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target ids must be in [0, {num_classes}) or the ignore id")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predicted ids must be in [0, {num_classes})")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a.astype(np.float64), b.astype(np.float64))


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of (non-void) pixels classified correctly; NaN for an empty matrix."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def tp_rate(cm: np.ndarray) -> np.ndarray:
    """Per-class TP rate (recall, per-class accuracy) ``TP / (TP + FN)``; NaN if no truth."""
    return _div(np.diag(cm), cm.sum(axis=1))


def mean_pixel_accuracy(cm: np.ndarray) -> float:
    """Mean of :func:`tp_rate` over classes present in the ground truth."""
    rates = tp_rate(cm)
    return float(np.nanmean(rates)) if np.isfinite(rates).any() else float("nan")


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN for a class absent from both truth and prediction."""
    tp = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - tp
    return _div(tp, union)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over classes present in the truth or the prediction."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def fp_tp_ratio(cm: np.ndarray) -> np.ndarray:
    """Per-class false positives over true positives (Squeeze U-Net paper, Table 7)."""
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    return _div(fp, tp)


def _json_float(v: float) -> float | None:
    # NaN / inf are not JSON; None says "undefined for this class".
    return float(v) if np.isfinite(v) else None


def segmentation_metrics(
    cm: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every metric the papers use, as a JSON-ready dict.

    Returns:
        ``{"miou", "pixel_acc", "mean_acc", "iou": {class: v}, "tp_rate": {class: v},
        "fp_tp": {class: v}}``; undefined per-class values are None.
    """
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class confusion matrix")
    return {
        "miou": _json_float(mean_iou(cm)),
        "pixel_acc": _json_float(pixel_accuracy(cm)),
        "mean_acc": _json_float(mean_pixel_accuracy(cm)),
        "iou": {n: _json_float(v) for n, v in zip(names, iou_per_class(cm), strict=True)},
        "tp_rate": {n: _json_float(v) for n, v in zip(names, tp_rate(cm), strict=True)},
        "fp_tp": {n: _json_float(v) for n, v in zip(names, fp_tp_ratio(cm), strict=True)},
    }


def batch_statistics(
    cms: Iterable[np.ndarray], class_names: Sequence[str] | None = None
) -> dict[str, dict[str, dict[str, float | None]]]:
    """The Squeeze U-Net paper's protocol: per-class metrics per batch, then mean/max/min.

    The paper splits its evaluation images into batches of eight, computes TP rate, IoU
    and FP/TP per class on each batch, and reports the mean, max and min over batches
    (its Table 7). Batches where a value is undefined are left out of its statistics.

    Args:
        cms: one confusion matrix per batch.
        class_names: names for the classes (default: ids).

    Returns:
        ``{metric: {class: {"mean", "max", "min"}}}`` for metric in tp_rate, iou, fp_tp.
    """
    cms = list(cms)
    if not cms:
        raise ValueError("batch_statistics needs at least one batch")
    k = cms[0].shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    per_metric = {
        "tp_rate": np.stack([tp_rate(c) for c in cms]),
        "iou": np.stack([iou_per_class(c) for c in cms]),
        "fp_tp": np.stack([fp_tp_ratio(c) for c in cms]),
    }
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for metric, values in per_metric.items():  # values: (batches, K)
        out[metric] = {}
        for i, name in enumerate(names):
            col = values[:, i]
            col = col[np.isfinite(col)]
            out[metric][name] = {
                "mean": float(col.mean()) if col.size else None,
                "max": float(col.max()) if col.size else None,
                "min": float(col.min()) if col.size else None,
            }
    return out
