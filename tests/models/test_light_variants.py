"""L3U-Net, EdgeSegNet and WSPD-Net against the spec (sections 2 and 4)."""

from __future__ import annotations

import pytest
import torch

from edgeseg.layers.fold import fold, unfold
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model


@pytest.mark.parametrize("r", [2, 4])
@pytest.mark.parametrize("channels", [1, 3, 11])
def test_fold_unfold_are_exact_inverses(r: int, channels: int) -> None:
    x = torch.randn(2, channels, 8 * r, 5 * r)
    y = fold(x, r)
    assert y.shape == (2, r * r * channels, 8, 5)
    assert torch.equal(unfold(y, r), x)
    z = torch.randn(2, r * r * channels, 3, 7)
    assert torch.equal(fold(unfold(z, r), r), z)


def test_fold_channel_order_is_the_papers() -> None:
    """Channel (i*4+j)*3+c holds x[c, i::4, j::4] (not pixel_unshuffle's order)."""
    x = torch.randn(1, 3, 16, 12)
    y = fold(x, 4)
    for i in range(4):
        for j in range(4):
            for c in range(3):
                assert torch.equal(y[0, (i * 4 + j) * 3 + c], x[0, c, i::4, j::4])
    assert not torch.equal(y, torch.nn.functional.pixel_unshuffle(x, 4))


def test_l3unet_count_and_layers() -> None:
    model = create_model("l3unet", num_classes=4)
    assert param_count(model) == 279_084
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.affine for bn in bns)
    assert model.output_stride == 32


def test_wspdnet_count_in_the_thesis_range() -> None:
    with torch.device("meta"):
        model = create_model("wspdnet", num_classes=20)
    n = param_count(model)
    assert n == 716_288
    assert 670_000 <= n <= 720_000  # the thesis: "about 0.67-0.72 M"


def test_dws_dil_sees_far() -> None:
    """The 1/8-resolution block's receptive field spans its dilations (up to 16)."""
    from edgeseg.layers import DWSDil

    block = DWSDil(8).eval()
    x = torch.zeros(1, 8, 41, 41, requires_grad=True)
    block(x)[0, :, 20, 20].sum().backward()
    reach = (x.grad[0].abs().sum(0) > 0).nonzero()
    assert int((reach[:, 0] - 20).abs().max()) >= 16


def test_edgesegnet_reading() -> None:
    """The documented reading: one main path, refine modules, 1/4-resolution head."""
    from edgeseg.models.edgesegnet import RefineModule

    model = create_model("edgesegnet", num_classes=11)
    assert param_count(model) == 1_417_419
    assert sum(isinstance(m, RefineModule) for m in model.modules()) == 3
    assert model.output_stride == 32
