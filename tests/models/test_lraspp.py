"""LR-ASPP MobileNetV3: counts against torchvision's, the paper's tables, the head's taps."""

from __future__ import annotations

import torch

from edgeseg.layers.mobilenet import make_divisible
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model
from edgeseg.models.lraspp import LARGE, SMALL


def test_large_has_torchvisions_parameter_count() -> None:
    # torchvision.models.segmentation.lraspp_mobilenet_v3_large(num_classes=21): 3,221,538
    with torch.device("meta"):
        model = create_model("lraspp_mobilenetv3_large", num_classes=21)
    assert param_count(model) == 3_221_538


def test_small_count_and_the_tables_shape() -> None:
    # torchvision has no LR-ASPP builder for Small; the same construction gives 1,077,954.
    with torch.device("meta"):
        model = create_model("lraspp_mobilenetv3_small", num_classes=21)
    assert param_count(model) == 1_077_954
    assert (len(LARGE), len(SMALL)) == (15, 11)  # the papers' Tables 1 and 2
    assert [r.stride for r in LARGE].count(2) == 4 and [r.stride for r in SMALL].count(2) == 4
    assert [make_divisible(c // 4) for c in (72, 120, 16, 144)] == [24, 32, 8, 40]


def test_low_features_are_at_one_eighth_and_high_at_one_sixteenth() -> None:
    model = create_model("lraspp_mobilenetv3_large", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        low = model.to8(model.stem(x))
        high = model.to16(low)
    assert low.shape == (1, 40, 8, 12) and high.shape == (1, 960, 4, 6)
