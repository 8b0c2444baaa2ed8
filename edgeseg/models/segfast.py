"""SegFast and SegFast-Basic (Mehta et al., seed 004), as in the authors' released code.

SegFast is a U-shaped network of *Spark* modules (a Fire module whose 3x3 expand is
depthwise-separable) with depthwise-separable transposed convolutions for upsampling;
SegFast-Basic puts plain convolutions in their place. The released code (C = 64) is
followed layer by layer (``../shared/spec/ARCHITECTURES.md`` section 3)::

    stem   DWConv(3 -> 64, stride 2)                                        /2
    downN  AvgPool2 -> Spark(C, C/2, C, C) -> Spark(2C, C/2, C, C),  C = 64, 128, 256
    upN    DWConvTranspose(2C -> C) -> pad -> concat skip -> Spark(2C, C/2, C/2, C/2),
           C = 256, 128, 64
    head   1x1 64 -> K (bias), bilinear x2

Parameters: 626,052 + 65K (SegFast) and 2,850,528 + 65K (SegFast-Basic), exactly the
released code's. The paper's tables give 603,288 and 2,965,976 for a variant that was not
released. Deviations: none in the layers; like the released code, every conv keeps its
bias even before BatchNorm (dead parameters, kept so that counts and weights match). The
paper's IoU scores classes absent from both prediction and truth as 1.0; edgeseg's metrics
do not (see ``edgeseg.metrics``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers import ConvNormAct, ConvTransposeNormAct, DWConv, DWConvTranspose, Spark
from edgeseg.layers.up import UpBlock
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: Channels C of the three encoder levels (Down(C) outputs 2C) and of the decoder levels.
DOWN: tuple[int, ...] = (64, 128, 256)
UP: tuple[int, ...] = (256, 128, 64)


class SegFast(SegmentationModel):
    """SegFast (``basic=False``) or SegFast-Basic (``basic=True``).

    Stages: ``stem, down1..down3, up1..up3, head``. Output stride 16 (the stem and three
    average pools); inputs are padded to it and the logits cropped back.

    Args:
        num_classes: K.
        in_channels: input channels.
        basic: plain 3x3 convs and transposed convs instead of depthwise-separable ones.
        width: C of the first level (the released code: 64).
        norm: normalisation after every conv.
    """

    # Registered by name in __init__ (add_module); declared for the type checker.
    down1: nn.Module
    down2: nn.Module
    down3: nn.Module
    up1: nn.Module
    up2: nn.Module
    up3: nn.Module

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        basic: bool = False,
        width: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.output_stride = 16
        scale = width / 64
        down = [int(c * scale) for c in DOWN]
        up = [int(c * scale) for c in UP]
        sep = not basic
        if basic:
            self.stem: nn.Module = ConvNormAct(in_channels, down[0], 3, 2, norm=norm, bias=True)
        else:
            self.stem = DWConv(in_channels, down[0], 3, 2, norm=norm, bias=True)
        for i, c in enumerate(down, 1):
            self.add_module(
                f"down{i}",
                nn.Sequential(
                    nn.AvgPool2d(2),
                    Spark(c, c // 2, c, c, separable=sep, norm=norm, bias=True),
                    Spark(2 * c, c // 2, c, c, separable=sep, norm=norm, bias=True),
                ),
            )
        for i, c in enumerate(up, 1):
            upsample = (
                ConvTransposeNormAct(2 * c, c, 3, stride=2, padding=1, norm=norm, bias=True)
                if basic
                else DWConvTranspose(2 * c, c, norm=norm, bias=True)
            )
            # (2H - 1, 2W - 1) -> (2H, 2W): the skip's size, since inputs are padded to 16.
            self.add_module(
                f"up{i}",
                UpBlock(
                    nn.Sequential(upsample, nn.ZeroPad2d((0, 1, 0, 1))),
                    Spark(2 * c, c // 2, c // 2, c // 2, separable=sep, norm=norm, bias=True),
                ),
            )
        self.head = nn.Conv2d(up[-1], num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)  # (B, C, H/2, W/2)
        s1 = self.down1(s0)  # (B, 2C, H/4, W/4)
        s2 = self.down2(s1)  # (B, 4C, H/8, W/8)
        y = self.down3(s2)  # (B, 8C, H/16, W/16)
        y = self.up1(y, s2)  # (B, 4C, H/8, W/8)
        y = self.up2(y, s1)  # (B, 2C, H/4, W/4)
        y = self.up3(y, s0)  # (B, C, H/2, W/2)
        y = self.head(y)  # (B, K, H/2, W/2)
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)


@register_model(tags=("paper",))
def segfast(
    num_classes: int, in_channels: int = 3, width: int = 64, norm: str = "batch"
) -> SegFast:
    """SegFast (Spark modules, depthwise-separable convs): 626,052 + 65K parameters."""
    return SegFast(num_classes, in_channels, basic=False, width=width, norm=norm)


@register_model(tags=("paper",))
def segfast_basic(
    num_classes: int, in_channels: int = 3, width: int = 64, norm: str = "batch"
) -> SegFast:
    """SegFast-Basic (plain convs and transposed convs): 2,850,528 + 65K parameters."""
    return SegFast(num_classes, in_channels, basic=True, width=width, norm=norm)
