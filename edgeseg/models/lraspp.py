"""LR-ASPP on MobileNetV3 (Howard et al., *Searching for MobileNetV3*, ICCV 2019, sec. 6.3).

The backbone is MobileNetV3-Large or -Small (the paper's Tables 1 and 2, rows below) with
its last stride-2 stage dilated instead (output stride 16), and the last 1x1 conv (960 /
576 channels) kept, as torchvision's ``lraspp_mobilenet_v3_large`` builds it::

    stem   conv 3x3 s2 (16), hard swish                                      /2
    rows   inverted residuals of LARGE / SMALL                               /4 /8 /16
    last   conv 1x1 (6 x 160 = 960 | 6 x 96 = 576), hard swish
    head   LR-ASPP: 1x1 conv (128) + BN + ReLU on the 1/16 features, times a global-pool
           1x1 conv + sigmoid gate; bilinear to 1/8; a 1x1 classifier of each of the 1/8
           features (40 | 24 channels) and of the gated branch, summed; bilinear x8

Parameters at 21 classes: 3,221,538 (Large), exactly torchvision's
``lraspp_mobilenet_v3_large`` (pinned in the tests); Small: 1,077,954 (torchvision has
no builder for it; the same construction on ``mobilenet_v3_small``).

Deviations: BatchNorm momentum is PyTorch's 0.1, not torchvision's 0.01 (trained from
scratch on a CPU budget, the slow running statistics lag the weights for thousands of
steps); no ImageNet weights are loaded (nothing is downloaded). The classifier of the
ImageNet network (pool + fully connected layers) is not part of the segmenter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.mobilenet import BN_EPS, BlockRow, InvertedResidual, conv_bn_act
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

R = BlockRow
#: MobileNetV3-Large (Table 1). The last three rows form the dilated 1/16 stage.
LARGE: tuple[BlockRow, ...] = (
    R(16, 3, 16, 16, False, "RE", 1),
    R(16, 3, 64, 24, False, "RE", 2),
    R(24, 3, 72, 24, False, "RE", 1),
    R(24, 5, 72, 40, True, "RE", 2),
    R(40, 5, 120, 40, True, "RE", 1),
    R(40, 5, 120, 40, True, "RE", 1),
    R(40, 3, 240, 80, False, "HS", 2),
    R(80, 3, 200, 80, False, "HS", 1),
    R(80, 3, 184, 80, False, "HS", 1),
    R(80, 3, 184, 80, False, "HS", 1),
    R(80, 3, 480, 112, True, "HS", 1),
    R(112, 3, 672, 112, True, "HS", 1),
    R(112, 5, 672, 160, True, "HS", 2),
    R(160, 5, 960, 160, True, "HS", 1),
    R(160, 5, 960, 160, True, "HS", 1),
)
#: MobileNetV3-Small (Table 2). The last three rows form the dilated 1/16 stage.
SMALL: tuple[BlockRow, ...] = (
    R(16, 3, 16, 16, True, "RE", 2),
    R(16, 3, 72, 24, False, "RE", 2),
    R(24, 3, 88, 24, False, "RE", 1),
    R(24, 5, 96, 40, True, "HS", 2),
    R(40, 5, 240, 40, True, "HS", 1),
    R(40, 5, 240, 40, True, "HS", 1),
    R(40, 5, 120, 48, True, "HS", 1),
    R(48, 5, 144, 48, True, "HS", 1),
    R(48, 5, 288, 96, True, "HS", 2),
    R(96, 5, 576, 96, True, "HS", 1),
    R(96, 5, 576, 96, True, "HS", 1),
)


class LRASPPHead(nn.Module):
    """Lite R-ASPP: a gated 1x1 branch on the 1/16 features plus a 1/8 shortcut."""

    def __init__(self, low: int, high: int, num_classes: int, inter: int = 128) -> None:
        super().__init__()
        self.cbr = conv_bn_act(high, inter, 1, act=nn.ReLU)
        self.scale = nn.Sequential(nn.Conv2d(high, inter, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        # high (B, C_h, H/16, W/16), gated by its global average; low (B, C_l, H/8, W/8)
        x = self.cbr(high) * self.scale(high.mean((2, 3), keepdim=True))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)  # (B, K, H/8, W/8)


class LRASPPMobileNetV3(SegmentationModel):
    """LR-ASPP segmenter on a MobileNetV3 backbone.

    Stages: ``stem``, ``to8`` (to the block that reaches 1/8: the low-level features),
    ``to16`` (the rest, the last stage dilated, and the last 1x1 conv), ``head``.
    Output stride 16.

    Args:
        num_classes: K.
        in_channels: input channels.
        rows: the backbone's :class:`~edgeseg.layers.mobilenet.BlockRow` table.
    """

    def __init__(self, num_classes: int, in_channels: int, rows: tuple[BlockRow, ...]) -> None:
        super().__init__()
        self.output_stride = 16
        strided = [i for i, r in enumerate(rows) if r.stride == 2]
        # The low-level features are the output of the block that reaches 1/8 (as
        # torchvision taps them); the last stride-2 stage is dilated instead (1/16 stays).
        low, dilated = strided[-3], strided[-1]
        last = 6 * rows[-1].cout
        self.stem = conv_bn_act(in_channels, rows[0].cin, 3, 2)
        self.to8 = nn.Sequential(*(InvertedResidual(r) for r in rows[: low + 1]))
        self.to16 = nn.Sequential(
            *(InvertedResidual(r, 2 if i >= dilated else 1) for i, r in enumerate(rows) if i > low),
            conv_bn_act(rows[-1].cout, last, 1),
        )
        self.head = LRASPPHead(rows[low].cout, last, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                assert m.eps == BN_EPS
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        low = self.to8(self.stem(x))  # (B, 40 | 24, H/8, W/8)
        high = self.to16(low)  # (B, 960 | 576, H/16, W/16)
        y = self.head(low, high)  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(tags=("reference",))
def lraspp_mobilenetv3_large(num_classes: int, in_channels: int = 3) -> LRASPPMobileNetV3:
    """LR-ASPP on MobileNetV3-Large (dilated, output stride 16): 3,221,538 params at K=21."""
    return LRASPPMobileNetV3(num_classes, in_channels, LARGE)


@register_model(tags=("reference",))
def lraspp_mobilenetv3_small(num_classes: int, in_channels: int = 3) -> LRASPPMobileNetV3:
    """LR-ASPP on MobileNetV3-Small (dilated, output stride 16)."""
    return LRASPPMobileNetV3(num_classes, in_channels, SMALL)
