"""ERFNet against the spec: counts (with the reference's dead layer stated), MACs, blocks."""

from __future__ import annotations

import pytest
import torch

from edgeseg.layers.erfnet_blocks import Downsampler, NonBottleneck1D, Upsampler
from edgeseg.measure.counts import count_flops, param_count
from edgeseg.models import create_model

REFERENCE_K20 = 2_066_836  # the spec / authors' code at K = 20
ENCODER_CLASSIFIER_K20 = 128 * 20 + 20  # its unused encoder-only 1x1 classifier


def test_count_equals_reference_minus_its_dead_encoder_classifier() -> None:
    with torch.device("meta"):
        model = create_model("erfnet", num_classes=20)
    assert param_count(model) == 2_064_256 == REFERENCE_K20 - ENCODER_CLASSIFIER_K20


def test_macs_at_512x1024() -> None:
    with torch.device("meta"):
        model = create_model("erfnet", num_classes=20).eval()
        macs = count_flops(model, torch.empty(1, 3, 512, 1024)) / 2e9
    assert macs == pytest.approx(26.6, rel=0.005)


def test_blocks() -> None:
    ds = Downsampler(16, 64)
    assert ds(torch.randn(1, 16, 10, 14)).shape == (1, 64, 5, 7)
    nb = NonBottleneck1D(32, dropout=0.3, dilation=4).eval()
    x = torch.randn(1, 32, 12, 12)
    assert nb(x).shape == x.shape
    assert nb.conv3x1_2.dilation == (4, 1) and nb.conv1x3_2.dilation == (1, 4)
    assert nb.bn1.eps == 1e-3
    assert Upsampler(64, 16)(torch.randn(1, 64, 5, 7)).shape == (1, 16, 10, 14)
    with pytest.raises(ValueError, match="needs out > in"):
        Downsampler(64, 64)


def test_dilations_follow_the_table() -> None:
    model = create_model("erfnet", num_classes=5)
    dil = [m.conv3x1_2.dilation[0] for m in model.encoder if isinstance(m, NonBottleneck1D)]
    assert dil == [1] * 5 + [2, 4, 8, 16] * 2
