"""SegFast and SegFast-Basic against the spec: counts, MACs, layer shapes."""

from __future__ import annotations

import pytest
import torch

from edgeseg.measure.counts import count_flops, param_count
from edgeseg.models import create_model


@pytest.mark.parametrize(
    ("name", "body", "gmacs"),
    [("segfast", 626_052, 0.468), ("segfast_basic", 2_850_528, 1.708)],
)
def test_counts_and_macs_match_the_released_code(name: str, body: int, gmacs: float) -> None:
    # Spec section 3: P = body + 65K (1x1 head with bias); MACs at 224x224, K = 12.
    # The paper's tables (603,288 / 2,965,976) describe an unreleased variant.
    with torch.device("meta"):
        for k in (12, 20):
            assert param_count(create_model(name, num_classes=k)) == body + 65 * k
        model = create_model(name, num_classes=12).eval()
        macs = count_flops(model, torch.empty(1, 3, 224, 224)) / 2e9
    assert macs == pytest.approx(gmacs, rel=0.005)


def test_stage_shapes() -> None:
    model = create_model("segfast", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 96)
    s0 = model.stem(x)
    s1 = model.down1(s0)
    s2 = model.down2(s1)
    s3 = model.down3(s2)
    assert s0.shape == (1, 64, 32, 48) and s1.shape == (1, 128, 16, 24)
    assert s2.shape == (1, 256, 8, 12) and s3.shape == (1, 512, 4, 6)
    y = model.up1(s3, s2)
    assert y.shape == (1, 256, 8, 12)
    assert model(x).shape == (1, 5, 64, 96)


def test_width_option_scales_channels() -> None:
    half = create_model("segfast", num_classes=4, width=32)
    assert param_count(half) < param_count(create_model("segfast", num_classes=4)) / 3
    assert half(torch.randn(2, 3, 40, 40)).shape == (2, 4, 40, 40)
