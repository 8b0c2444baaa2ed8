"""CGNet (Wu et al., *CGNet: A Light-weight Context Guided Network for Semantic
Segmentation*, IEEE TIP 2021), as in the authors' code (M = 3, N = 21)::

    stage 1  3 x conv 3x3 (32; the first stride 2), concat the image at 1/2      /2
    stage 2  CG block down (-> 64, dilation 2, reduction 8), M - 1 CG blocks,
             concat [blocks' output, the down block's, the image at 1/4]         /4
    stage 3  CG block down (-> 128, dilation 4, reduction 16), N - 1 CG blocks,
             concat [down block's output, blocks' output]                         /8
    head     BN-PReLU, 1x1 conv (no bias) -> K, bilinear x8

Every concat is followed by BN-PReLU. Parameters: 496,306 at K=19, exactly the reference
code's (pinned in the tests; paper: 0.5 M). Deviations: none in the layers; the
classifier's dropout (off in the reference's default) is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.context import BNPReLU, ContextGuided, InputInjection, conv_bn_prelu
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model


class CGNet(SegmentationModel):
    """CGNet. Stages: ``stage1, stage2_down, stage2, stage3_down, stage3, head``.

    Args:
        num_classes: K.
        in_channels: input channels.
        m: CG blocks at 1/4 (the paper's M, down block included).
        n: CG blocks at 1/8 (the paper's N, down block included).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, m: int = 3, n: int = 21) -> None:
        super().__init__()
        self.output_stride = 8
        c = in_channels
        self.stage1 = nn.Sequential(
            conv_bn_prelu(c, 32, 3, 2), conv_bn_prelu(32, 32), conv_bn_prelu(32, 32)
        )
        self.inject1, self.inject2 = InputInjection(1), InputInjection(2)
        self.norm1 = BNPReLU(32 + c)
        self.stage2_down = ContextGuided(32 + c, 64, dilation=2, reduction=8, down=True)
        self.stage2 = nn.Sequential(*(ContextGuided(64, 64, 2, 8) for _ in range(m - 1)))
        self.norm2 = BNPReLU(128 + c)
        self.stage3_down = ContextGuided(128 + c, 128, dilation=4, reduction=16, down=True)
        self.stage3 = nn.Sequential(*(ContextGuided(128, 128, 4, 16) for _ in range(n - 1)))
        self.head = nn.Sequential(BNPReLU(256), nn.Conv2d(256, num_classes, 1, bias=False))
        for mod in self.modules():  # the reference's initialisation
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.norm1(torch.cat([self.stage1(x), self.inject1(x)], 1))  # (B, 32+3, H/2, W/2)
        d2 = self.stage2_down(y1)  # (B, 64, H/4, W/4)
        y2 = self.norm2(torch.cat([self.stage2(d2), d2, self.inject2(x)], 1))  # 128 + 3
        d3 = self.stage3_down(y2)  # (B, 128, H/8, W/8)
        y = self.head(torch.cat([d3, self.stage3(d3)], 1))  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(tags=("camvid",))
def cgnet(num_classes: int, in_channels: int = 3, m: int = 3, n: int = 21) -> CGNet:
    """CGNet (M=3, N=21): 496,306 parameters at K=19, as the authors' code."""
    return CGNet(num_classes, in_channels, m, n)
