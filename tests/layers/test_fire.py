from __future__ import annotations

import torch

from edgeseg.layers import ConvNormAct, Fire, TransposedFire, UpBlock, make_norm
from edgeseg.measure.counts import conv_weight_count


def test_fire_shapes_and_weights() -> None:
    f = Fire(64, 32, 64, stride=2)
    assert f(torch.randn(1, 64, 20, 30)).shape == (1, 128, 10, 15)
    assert conv_weight_count(f) == 64 * 32 + 32 * 64 + 32 * 64 * 9
    assert Fire(128, 32, 64)(torch.randn(1, 128, 7, 9)).shape == (1, 128, 7, 9)


def test_transposed_fire_doubles_resolution() -> None:
    tf = TransposedFire(1024, 80, 256)
    assert conv_weight_count(tf) == 184_320
    assert tf(torch.randn(1, 1024, 5, 7)).shape == (1, 512, 10, 14)


def test_transposed_fire_squeeze_places_pixels_on_even_grid() -> None:
    tf = TransposedFire(4, 2, 3, norm="none").eval()
    s = tf.squeeze[0]
    torch.nn.init.ones_(s.weight)
    torch.nn.init.zeros_(s.bias)
    up = s(torch.ones(1, 4, 3, 3))
    assert up.shape == (1, 2, 6, 6)
    assert (up[:, :, ::2, ::2] == 4).all() and (up[:, :, 1::2, :] == 0).all()


def test_up_block_concatenates_skip() -> None:
    block = UpBlock(torch.nn.ConvTranspose2d(8, 4, 2, stride=2), ConvNormAct(4 + 6, 5, 3))
    assert block(torch.randn(1, 8, 4, 5), torch.randn(1, 6, 8, 10)).shape == (1, 5, 8, 10)


def test_make_norm_group_divides_channels() -> None:
    gn = make_norm("group", 80)
    assert isinstance(gn, torch.nn.GroupNorm) and 80 % gn.num_groups == 0
    try:
        make_norm("layer", 8)
    except ValueError as e:
        assert "norm must be one of" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")
