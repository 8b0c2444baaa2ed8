"""Squeeze U-Net and its U-Net baseline against the paper's tables (spec section 1)."""

from __future__ import annotations

import pytest
import torch

from edgeseg.measure.counts import conv_weight_count, count_flops, paper_macs
from edgeseg.models import create_model

K = 11

#: Conv weights per stage, the paper's Tables 3 and 4 (TF3 erratum fixed: 27,648).
SQUEEZE_STAGES = {
    "stem": 38_592,
    "ds1": 47_104,
    "ds2": 141_312,
    "ds3": 376_832,
    "ds4": 942_080,
    "us1": 184_320 + 425_984,  # TF1 + US1
    "us2": 73_728 + 159_744,  # TF2 + US2
    "us3": 27_648 + 53_248,  # TF3 + US3
    "head": 32_768 + 110_592 + 64 * K,  # 2x2 up, two 3x3, 1x1 -> K
}
UNET_STAGES = {
    "stem": 38_592,
    "ds1": 221_184,
    "ds2": 884_736,
    "ds3": 3_538_944,
    "ds4": 14_155_776,
    "us1": 2_097_152 + 7_077_888,
    "us2": 524_288 + 1_769_472,
    "us3": 131_072 + 442_368,
    "head": 32_768 + 110_592 + 64 * K,
}


def _meta(name: str, **kw: object) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes=K, **kw).eval()


@pytest.mark.parametrize(
    ("name", "stages"), [("squeeze_unet", SQUEEZE_STAGES), ("unet", UNET_STAGES)]
)
def test_conv_weights_per_stage(name: str, stages: dict[str, int]) -> None:
    model = _meta(name)
    got = {n: conv_weight_count(m) for n, m in model.stages()}
    assert got == stages


def test_total_conv_weights() -> None:
    assert conv_weight_count(_meta("squeeze_unet")) == 2_613_952 + 64 * K
    assert conv_weight_count(_meta("unet")) == 31_024_832 + 64 * K
    # Table 3 (contracting path, stem included) and Table 4 (expanding path) totals.
    sq = {n: conv_weight_count(m) for n, m in _meta("squeeze_unet").stages()}
    assert sum(sq[s] for s in ("stem", "ds1", "ds2", "ds3", "ds4")) == 1_545_920
    assert sum(sq[s] for s in ("us1", "us2", "us3", "head")) - 64 * K == 1_068_032


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_is_switchable(norm: str) -> None:
    model = _meta("squeeze_unet", norm=norm)
    assert conv_weight_count(model) == 2_613_952 + 64 * K  # norm never changes conv weights
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    has_bias = any(
        getattr(m, "bias", None) is not None
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.out_channels != K
    )
    assert has_bn == (norm == "batch")
    assert has_bias == (norm == "none")  # Keras reference: bias, no normalisation


@pytest.mark.parametrize(("name", "paper"), [("squeeze_unet", 88.6e9), ("unet", 288.0e9)])
def test_paper_macs_at_360x480(name: str, paper: float) -> None:
    model = _meta(name)
    x = torch.empty(1, 3, 360, 480, device="meta")
    assert paper_macs(model, x) == pytest.approx(paper, rel=0.01)


def test_squeeze_unet_flops_and_macs_at_360x480() -> None:
    model = _meta("squeeze_unet")
    flops = count_flops(model, torch.empty(1, 3, 360, 480, device="meta"))
    assert flops == pytest.approx(88.6e9, rel=0.15)
    assert flops / 2 == pytest.approx(44.3e9, rel=0.15)


def test_unet_flops_at_360x480() -> None:
    flops = count_flops(_meta("unet"), torch.empty(1, 3, 360, 480, device="meta"))
    assert flops == pytest.approx(288.0e9, rel=0.15)


def test_squeeze_unet_is_3x_cheaper_and_12x_smaller() -> None:
    sq, un = _meta("squeeze_unet"), _meta("unet")
    x = torch.empty(1, 3, 360, 480, device="meta")
    assert conv_weight_count(un) / conv_weight_count(sq) == pytest.approx(11.9, rel=0.02)
    assert paper_macs(un, x) / paper_macs(sq, x) == pytest.approx(3.25, rel=0.02)


# ---------------------------------------------------------------- seed 001's variants


def test_depthwise_separable_variant_weights() -> None:
    """Every k>1 conv as depthwise + pointwise: the spec's derived 930,683 at K=11."""
    assert conv_weight_count(_meta("squeeze_unet_dws")) == 930_683


def test_depthwise_separable_variant_has_no_dense_spatial_conv() -> None:
    model = _meta("squeeze_unet_dws")
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.kernel_size != (1, 1):
            assert m.groups == m.in_channels, f"{name} is a dense {m.kernel_size} conv"


def test_encoder_decoder_has_no_skips_and_fire_deconv() -> None:
    from edgeseg.layers import FireDeconv

    model = create_model("squeeze_encdec", num_classes=K).eval()
    ups = [m for m in model.modules() if isinstance(m, FireDeconv)]
    assert len(ups) == 3
    # The decoder's first Fire sees only the upsampled features (2e channels, no skip).
    assert model.us1.fuse[0].squeeze[0].in_channels == 2 * 256
    assert model.head.fuse[0][0].in_channels == 64


def test_fire_deconv_starts_as_bilinear_upsampling() -> None:
    from edgeseg.layers.fire import FireDeconv

    block = FireDeconv(8, 4, 4, norm="none")
    up = block.up[0]
    x = torch.rand(1, 4, 6, 6)
    y = up(x)  # bilinear x2 of each channel (bias 0), interior rows and columns
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
