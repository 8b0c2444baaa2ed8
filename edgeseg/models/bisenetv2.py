"""BiSeNet V2 (Yu et al., *BiSeNet V2: Bilateral Network with Guided Aggregation for
Real-time Semantic Segmentation*, IJCV 2021), as in CoinCheung/BiSeNet (the reference
PyTorch code the paper's numbers are usually reproduced with)::

    detail   3 stages of 3x3 conv-BN-ReLU (64, 64, 128 channels), each starting at
             stride 2                                                           /8
    semantic stem (conv s2; conv 1x1 + conv s2 beside a max-pool; fuse)         /4
             gather-and-expand layers: S3 (32), S4 (64), S5 (128; 1 + 3 layers)   /8 /16 /32
             context embedding (global average, BN, 1x1, add, 3x3)
    BGA      bilateral guided aggregation of the two branches                   /8
    head     3x3 conv-BN-ReLU (1024), 1x1 -> K, bilinear x8

Booster heads (the paper's "booster training strategy") read the semantic branch at
1/4, 1/8, 1/16 and 1/32 during training only: :meth:`BiSeNetV2.aux_heads` builds them
and :meth:`BiSeNetV2.forward_taps` returns the features they read; ``forward`` is the
plain logits contract, so the exported graph has no booster.

Parameters: 3,358,627 at K=19 without the boosters and 1,872,860 in the four boosters
(5,231,487 together), exactly the reference code's (pinned in the tests). Deviations:
the nearest-neighbour x4 upsamplings of BGA are written as ``interpolate`` to the detail
branch's size (the same values when the input is padded to 32, which the model contract
does); the last BatchNorm of each gather-and-expand layer starts at the default scale 1,
not the reference's 0 (with 0, no gradient reaches the layer's first convs at the first
step); no ImageNet-pretrained semantic branch is loaded (nothing is downloaded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.conv import ConvNormAct
from edgeseg.models._base import TappedSegmentationModel
from edgeseg.models._registry import register_model


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> ConvNormAct:
    """``Conv2d (no bias) -> BatchNorm -> ReLU``, "same" padding."""
    return ConvNormAct(cin, cout, k, stride, groups=groups)


def cb(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> ConvNormAct:
    """``Conv2d (no bias) -> BatchNorm``, "same" padding."""
    return ConvNormAct(cin, cout, k, stride, groups=groups, act=False)


class StemBlock(nn.Module):
    """The semantic branch's stem: ``(B, 3, H, W) -> (B, 16, H/4, W/4)``."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = cbr(cin, 16, 3, 2)
        self.left = nn.Sequential(cbr(16, 8, 1), cbr(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = cbr(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fuse(torch.cat([self.left(y), self.right(y)], 1))


class GatherExpand(nn.Module):
    """Gather-and-expand layer (stride 1 or 2, expansion 6)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, exp: int = 6) -> None:
        super().__init__()
        mid = cin * exp
        self.conv1 = cbr(cin, cin)
        if stride == 1:
            self.dw: nn.Module = cbr(cin, mid, 3, 1, groups=cin)
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.dw = nn.Sequential(cb(cin, mid, 3, 2, groups=cin), cbr(mid, mid, 3, groups=mid))
            self.shortcut = nn.Sequential(cb(cin, cin, 3, 2, groups=cin), cb(cin, cout, 1))
        self.conv2 = cb(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.dw(self.conv1(x))) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Global average -> BN -> 1x1 conv-BN-ReLU, added back, then a 3x3 conv-BN-ReLU."""

    def __init__(self, c: int = 128) -> None:
        super().__init__()
        self.bn, self.gap, self.last = nn.BatchNorm2d(c), cbr(c, c, 1), cbr(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gap(self.bn(x.mean((2, 3), keepdim=True)))  # (B, C, 1, 1)
        return self.last(x + g)


class GuidedAggregation(nn.Module):
    """BGA: each branch gates the other, at 1/8 and at 1/32, then a 3x3 conv-BN-ReLU."""

    def __init__(self, c: int = 128) -> None:
        super().__init__()
        self.left1 = nn.Sequential(cb(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(cb(c, c, 3, 2), nn.AvgPool2d(3, 2, 1))
        self.right1 = cb(c, c, 3)
        self.right2 = nn.Sequential(cb(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = cbr(c, c)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        # detail (B, C, H/8, W/8), semantic (B, C, H/32, W/32)
        size = detail.shape[-2:]
        r1 = F.interpolate(self.right1(semantic), size=size, mode="nearest")
        left = self.left1(detail) * torch.sigmoid(r1)
        right = self.left2(detail) * torch.sigmoid(self.right2(semantic))
        return self.conv(left + F.interpolate(right, size=size, mode="nearest"))


class SegmentHead(nn.Module):
    """3x3 conv-BN-ReLU (``mid``), dropout, [x2 nearest + 3x3 conv-BN-ReLU to ``up^2``
    channels: the boosters], 1x1 -> K; logits at the head's input resolution x2 (boosters)
    or x1 (the main head): the caller resizes them."""

    def __init__(self, cin: int, mid: int, num_classes: int, up: int, booster: bool) -> None:
        super().__init__()
        self.conv, self.drop = cbr(cin, mid), nn.Dropout(0.1)
        self.booster = booster
        self.up_conv = cbr(mid, up * up) if booster else nn.Identity()
        self.classifier = nn.Conv2d(up * up if booster else mid, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.conv(x))
        if self.booster:
            y = self.up_conv(F.interpolate(y, scale_factor=2.0, mode="nearest"))
        return self.classifier(y)


#: Booster taps: feature name -> (channels, the reference's up factor).
TAPS: dict[str, tuple[int, int]] = {"s2": (16, 4), "s3": (32, 8), "s4": (64, 16), "s5": (128, 32)}


class BiSeNetV2(TappedSegmentationModel):
    """BiSeNet V2. Stages: ``detail, stem, s3, s4, s5, context, aggregate, head``.

    Args:
        num_classes: K.
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = 32
        c = in_channels
        self.detail = nn.Sequential(
            cbr(c, 64, 3, 2),
            cbr(64, 64),
            cbr(64, 64, 3, 2),
            cbr(64, 64),
            cbr(64, 64),
            cbr(64, 128, 3, 2),
            cbr(128, 128),
            cbr(128, 128),
        )
        self.stem = StemBlock(c)
        self.s3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32))
        self.s4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64))
        self.s5 = nn.Sequential(
            GatherExpand(64, 128, 2), *(GatherExpand(128, 128) for _ in range(3))
        )
        self.context = ContextEmbedding(128)
        self.aggregate = GuidedAggregation(128)
        self.head = SegmentHead(128, 1024, num_classes, 8, booster=False)
        self.num_classes = num_classes
        for m in self.modules():  # the reference's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits at the (padded) input's size and the semantic features the boosters read."""
        taps = {"s2": self.stem(x)}  # (B, 16, H/4, W/4)
        taps["s3"] = self.s3(taps["s2"])  # (B, 32, H/8, W/8)
        taps["s4"] = self.s4(taps["s3"])  # (B, 64, H/16, W/16)
        taps["s5"] = self.s5(taps["s4"])  # (B, 128, H/32, W/32)
        y = self.aggregate(self.detail(x), self.context(taps["s5"]))  # (B, 128, H/8, W/8)
        y = self.head(y)  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False), taps

    def aux_heads(self) -> nn.ModuleDict:
        """The four booster heads (training only), keyed by the tap they read."""
        k = self.num_classes
        return nn.ModuleDict(
            {t: SegmentHead(c, 128, k, up, booster=True) for t, (c, up) in TAPS.items()}
        )


@register_model(tags=("camvid",))
def bisenetv2(num_classes: int, in_channels: int = 3) -> BiSeNetV2:
    """BiSeNet V2: 3,358,627 parameters at K=19 (+1,872,860 in its training boosters)."""
    return BiSeNetV2(num_classes, in_channels)
