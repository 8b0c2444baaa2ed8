"""DABNet (Li et al., *DABNet: Depth-wise Asymmetric Bottleneck for Real-time Semantic
Segmentation*, BMVC 2019), as in the authors' code::

    stem     3 x conv 3x3 (32; the first stride 2), concat the image at 1/2       /2
    block 1  down-sample (35 -> 64: 3x3 s2 conv (29) + max-pool), 3 DAB modules
             (dilation 2), concat [modules' output, down-sampled, image at 1/4]   /4
    block 2  down-sample (131 -> 128, conv only), 6 DAB modules (dilations
             4, 4, 8, 8, 16, 16), concat [modules' output, down-sampled, image at 1/8] /8
    head     1x1 conv (no bias) 259 -> K, bilinear x8

Every concat is followed by BN-PReLU. Parameters: 756,643 at K=19, exactly the reference
code's (pinned in the tests; paper: 0.76 M). Deviations: none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.context import (
    BNPReLU,
    DABModule,
    DownsampleBlock,
    InputInjection,
    conv_bn_prelu,
)
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: Dilations of the DAB modules of block 1 and block 2.
BLOCK1: tuple[int, ...] = (2, 2, 2)
BLOCK2: tuple[int, ...] = (4, 4, 8, 8, 16, 16)


class DABNet(SegmentationModel):
    """DABNet. Stages: ``stem, down1, block1, down2, block2, head``.

    Args:
        num_classes: K.
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = 8
        c = in_channels
        self.stem = nn.Sequential(
            conv_bn_prelu(c, 32, 3, 2), conv_bn_prelu(32, 32), conv_bn_prelu(32, 32)
        )
        self.inject1, self.inject2, self.inject3 = (InputInjection(t) for t in (1, 2, 3))
        self.norm0 = BNPReLU(32 + c)
        self.down1 = DownsampleBlock(32 + c, 64)
        self.block1 = nn.Sequential(*(DABModule(64, d) for d in BLOCK1))
        self.norm1 = BNPReLU(128 + c)
        self.down2 = DownsampleBlock(128 + c, 128)
        self.block2 = nn.Sequential(*(DABModule(128, d) for d in BLOCK2))
        self.norm2 = BNPReLU(256 + c)
        self.head = nn.Conv2d(256 + c, num_classes, 1, bias=False)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.norm0(torch.cat([self.stem(x), self.inject1(x)], 1))  # (B, 35, H/2, W/2)
        d1 = self.down1(y0)  # (B, 64, H/4, W/4)
        y1 = self.norm1(torch.cat([self.block1(d1), d1, self.inject2(x)], 1))  # 131
        d2 = self.down2(y1)  # (B, 128, H/8, W/8)
        y2 = self.norm2(torch.cat([self.block2(d2), d2, self.inject3(x)], 1))  # 259
        y = self.head(y2)  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(tags=("camvid",))
def dabnet(num_classes: int, in_channels: int = 3) -> DABNet:
    """DABNet: 756,643 parameters at K=19, as the authors' code."""
    return DABNet(num_classes, in_channels)
