"""Metrics against confusion matrices computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeseg.metrics import (
    batch_statistics,
    confusion_matrix,
    fp_tp_ratio,
    iou_per_class,
    mean_iou,
    mean_pixel_accuracy,
    pixel_accuracy,
    segmentation_metrics,
    tp_rate,
)

# Truth 0 0 0 1 1 2 2 2 2 (and two void pixels, id 9); prediction 0 0 1 1 2 2 2 2 0.
TARGET = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 9, 9])
PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 0, 1, 2])
CM = np.array(
    [
        [2, 1, 0],  # truth 0: 2 right, 1 predicted as 1
        [0, 1, 1],  # truth 1: 1 right, 1 predicted as 2
        [1, 0, 3],  # truth 2: 3 right, 1 predicted as 0
    ]
)


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(PRED, TARGET, num_classes=3, ignore_index=9)
    np.testing.assert_array_equal(cm, CM)
    assert cm.dtype == np.int64


def test_metrics_by_hand() -> None:
    assert pixel_accuracy(CM) == pytest.approx(6 / 9)
    np.testing.assert_allclose(tp_rate(CM), [2 / 3, 1 / 2, 3 / 4])
    assert mean_pixel_accuracy(CM) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    # IoU: class 0: 2 / (3 + 3 - 2); class 1: 1 / (2 + 2 - 1); class 2: 3 / (4 + 4 - 3)
    np.testing.assert_allclose(iou_per_class(CM), [2 / 4, 1 / 3, 3 / 5])
    assert mean_iou(CM) == pytest.approx((1 / 2 + 1 / 3 + 3 / 5) / 3)
    # FP: class 0 gets 1 (from truth 2), class 1 gets 1, class 2 gets 1.
    np.testing.assert_allclose(fp_tp_ratio(CM), [1 / 2, 1 / 1, 1 / 3])


def test_absent_class_is_left_out_not_scored_one() -> None:
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = CM  # class 3: absent from truth and prediction
    assert math.isnan(iou_per_class(cm)[3])
    assert mean_iou(cm) == pytest.approx(mean_iou(CM))
    assert mean_pixel_accuracy(cm) == pytest.approx(mean_pixel_accuracy(CM))


def test_false_positive_only_class_counts_as_zero_iou() -> None:
    cm = np.array([[3, 1], [0, 0]])  # class 1 predicted once, never true
    np.testing.assert_allclose(iou_per_class(cm), [3 / 4, 0.0])
    assert mean_iou(cm) == pytest.approx(3 / 8)
    assert math.isnan(tp_rate(cm)[1]) and math.isinf(fp_tp_ratio(cm)[1])


def test_segmentation_metrics_json_ready() -> None:
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = CM
    d = segmentation_metrics(cm, ["a", "b", "c", "d"])
    assert set(d) == {"miou", "pixel_acc", "mean_acc", "iou", "tp_rate", "fp_tp"}
    assert d["iou"]["d"] is None and d["iou"]["a"] == pytest.approx(0.5)
    assert d["miou"] == pytest.approx(mean_iou(CM))
    with pytest.raises(ValueError, match="class names"):
        segmentation_metrics(cm, ["a"])


def test_batch_statistics_mean_max_min() -> None:
    perfect = np.diag([2, 2, 2])
    stats = batch_statistics([CM, perfect], ["a", "b", "c"])
    assert stats["iou"]["a"] == {"mean": pytest.approx(0.75), "max": 1.0, "min": 0.5}
    assert stats["fp_tp"]["b"]["min"] == 0.0 and stats["fp_tp"]["b"]["max"] == 1.0


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.tensor([0, 1]), torch.tensor([0, 5]), "target ids"),
        (torch.tensor([0, 7]), torch.tensor([0, 1]), "predicted ids"),
        (torch.tensor([0, 1, 1]), torch.tensor([0, 1]), "pixels"),
    ],
)
def test_confusion_matrix_rejects_bad_ids(pred, target, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, target, num_classes=3, ignore_index=9)
