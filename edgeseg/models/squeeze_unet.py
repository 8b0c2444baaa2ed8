"""Squeeze U-Net (Beheshti & Johnsson, "Squeeze U-Net: A Memory and Energy Efficient Image
Segmentation Network", CVPRW 2020).

Follows the paper's Tables 3 and 4 (contracting and expanding path) stage by stage, as
read in ``spec/ARCHITECTURES.md`` section 1. Conv weights: 2,613,952 + 64K.

Deviations and choices:
- The paper does not say where normalisation goes. ``norm="batch"`` (default) puts
  BatchNorm + ReLU after every conv (the modern choice; convs then carry no bias);
  ``norm="none"`` reproduces the public Keras reference: ReLU after every conv, with bias.
- The 2x2 transposed conv of a TransposedFire is cropped like TensorFlow's
  ``padding="same"``; inputs of any size are padded to a multiple of 16 and the logits
  cropped back (the paper only uses 360x480, which is not a multiple of 16).
- Paper errata (see spec): TF3 is 27,648 weights (printed 27,684); Table 4's total is
  1,068,032 (printed 1,068,068).

Seed 001's lightweight variants are built by the same class:
- ``squeeze_unet_dws``: every conv with a kernel larger than 1x1 (stem, Fire 3x3 expands,
  TransposedFire 2x2 expands, the head's up-conv and 3x3 convs) becomes a Keras-style
  separable conv: depthwise kxk -> pointwise 1x1 -> norm -> ReLU. Conv weights at K = 11:
  930,683 (the spec's derived figure; the blog publishes none).
- ``squeeze_encdec``: no skip connections, and SqueezeSeg's FireDeconv (squeeze 1x1 ->
  bilinear-initialised 4x4 stride-2 transposed conv on the squeezed channels -> 1x1 and
  3x3 expands) in place of TransposedFire; the US units' first Fire and the head see only
  the upsampled features.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers import ConvNormAct, Fire, FireDeconv, TransposedFire, UpBlock
from edgeseg.layers.separable import SeparableConvNormAct
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: Contracting path, one row per DS unit: (squeeze, expand). Each unit is
#: Fire(Cin, s, e, stride 2) -> Fire(2e, s, e); output 2e channels at half resolution.
ENCODER: tuple[tuple[int, int], ...] = (
    (32, 64),  # DS1: 64 -> 128 @ 1/2
    (48, 128),  # DS2: 128 -> 256 @ 1/4
    (64, 256),  # DS3: 256 -> 512 @ 1/8
    (80, 512),  # DS4: 512 -> 1024 @ 1/16
)

#: Expanding path, one row per US unit: (TF squeeze, TF expand, Fire squeeze, Fire expand).
#: Each unit is TransposedFire(Cin, s, e) -> concat skip -> Fire(.., s', e') -> Fire(2e', s', e').
DECODER: tuple[tuple[int, int, int, int], ...] = (
    (80, 256, 64, 256),  # TF1 + US1: 1024 -> 512 @ 1/8 (skip DS3)
    (64, 128, 48, 128),  # TF2 + US2: 512 -> 256 @ 1/4 (skip DS2)
    (48, 64, 32, 64),  # TF3 + US3: 256 -> 128 @ 1/2 (skip DS1)
)

STEM_CHANNELS = 64


class SqueezeUNet(SegmentationModel):
    """Squeeze U-Net: U-Net with Fire modules down and transposed Fire modules up.

    Stages (timed by the profiler, like the paper's Tables 5 and 6): ``stem`` (two 3x3
    convs, 64 ch @ 1), ``ds1``..``ds4``, ``us1``..``us3``, ``head`` (2x2 stride-2
    transposed conv 128->64, concat stem, two 3x3 convs, 1x1 -> K).

    Args:
        num_classes: K, output channels.
        in_channels: input channels.
        norm: ``"batch"`` (default), ``"group"`` or ``"none"`` (Keras reference: bias, no norm).
        encoder: DS rows ``(squeeze, expand)``; default :data:`ENCODER`.
        decoder: US rows ``(tf_squeeze, tf_expand, squeeze, expand)``; default :data:`DECODER`.
        separable: every conv with k > 1 as depthwise kxk + pointwise 1x1 (seed 001).
        skips: concatenate the encoder's features in the decoder (False: encoder-decoder).
        up: ``"transposed_fire"`` (the paper) or ``"fire_deconv"`` (SqueezeSeg's FireDeconv).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        norm: str = "batch",
        encoder: tuple[tuple[int, int], ...] = ENCODER,
        decoder: tuple[tuple[int, int, int, int], ...] = DECODER,
        separable: bool = False,
        skips: bool = True,
        up: str = "transposed_fire",
    ) -> None:
        super().__init__()
        if len(decoder) != len(encoder) - 1:
            raise ValueError("decoder needs one row fewer than encoder (the head is the last up)")
        ups = {"transposed_fire": TransposedFire, "fire_deconv": FireDeconv}
        if up not in ups:
            raise ValueError(f"up must be one of {sorted(ups)}, got {up!r}")
        self.output_stride = 2 ** len(encoder)
        self.use_skips = skips
        c0 = STEM_CHANNELS
        conv3 = SeparableConvNormAct if separable else ConvNormAct
        self.stem = nn.Sequential(conv3(in_channels, c0, 3, norm=norm), conv3(c0, c0, 3, norm=norm))
        skip_ch = [c0]
        cin = c0
        for i, (s, e) in enumerate(encoder, start=1):
            stage = nn.Sequential(
                Fire(cin, s, e, stride=2, norm=norm, separable=separable),
                Fire(2 * e, s, e, norm=norm, separable=separable),
            )
            self.add_module(f"ds{i}", stage)
            cin = 2 * e
            skip_ch.append(cin)
        for i, (ts, te, s, e) in enumerate(decoder, start=1):
            skip = skip_ch[-1 - i] if skips else 0
            upsample = ups[up](cin, ts, te, norm=norm, separable=separable)
            fuse = nn.Sequential(
                Fire(2 * te + skip, s, e, norm=norm, separable=separable),
                Fire(2 * e, s, e, norm=norm, separable=separable),
            )
            self.add_module(f"us{i}", UpBlock(upsample, fuse))
            cin = 2 * e
        # The head's transposed conv has no norm of its own: its output goes straight into
        # the concat, as in the reference.
        if separable:
            head_up: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(cin, cin, 2, stride=2, groups=cin, bias=False),
                nn.Conv2d(cin, c0, 1, bias=(norm == "none")),
            )
        else:
            head_up = nn.ConvTranspose2d(cin, c0, 2, stride=2, bias=(norm == "none"))
        self.head = UpBlock(
            head_up,
            nn.Sequential(
                conv3(2 * c0 if skips else c0, c0, 3, norm=norm),
                conv3(c0, c0, 3, norm=norm),
                nn.Conv2d(c0, num_classes, 1),
            ),
        )
        self.num_downs = len(encoder)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]  # (B, 64, H, W)
        for i in range(1, self.num_downs + 1):
            skips.append(getattr(self, f"ds{i}")(skips[-1]))  # (B, 2e_i, H/2^i, W/2^i)
        y = skips.pop()
        if not self.use_skips:  # encoder-decoder: the decoder sees only the bottleneck
            skips = [None] * len(skips)
        for i in range(1, self.num_downs):
            y = getattr(self, f"us{i}")(y, skips.pop())
        return self.head(y, skips.pop())  # (B, K, H, W)


@register_model(tags=("paper",))
def squeeze_unet(num_classes: int, in_channels: int = 3, norm: str = "batch") -> SqueezeUNet:
    """Squeeze U-Net, the paper's network (2.61 M conv weights + 64K)."""
    return SqueezeUNet(num_classes, in_channels, norm=norm)


@register_model(tags=("seed001",))
def squeeze_unet_dws(num_classes: int, in_channels: int = 3, norm: str = "batch") -> SqueezeUNet:
    """Depthwise-separable Squeeze U-Net (seed 001): 930,683 conv weights at K = 11."""
    return SqueezeUNet(num_classes, in_channels, norm=norm, separable=True)


@register_model(tags=("seed001",))
def squeeze_encdec(num_classes: int, in_channels: int = 3, norm: str = "batch") -> SqueezeUNet:
    """Squeeze encoder-decoder (seed 001): no skips, SqueezeSeg FireDeconv upsampling."""
    return SqueezeUNet(num_classes, in_channels, norm=norm, skips=False, up="fire_deconv")
