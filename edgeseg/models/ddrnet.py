"""DDRNet-23-slim (Hong, Pan, Sun and Jia, *Deep Dual-resolution Networks for Real-time and
Accurate Semantic Segmentation of Road Scenes*, 2021), its Table 1 as rows::

    stem        conv 3x3 s2 (32), conv 3x3 s2 (32)                                  /4
    conv2       2 basic blocks (32)                                                  /4
    conv3       2 basic blocks (64), stride 2                                        /8
    conv4       low: 2 basic blocks (128), s2 | high: 2 basic blocks (64); fusion   /16 | /8
    conv5_1     low: 2 basic blocks (256), s2 | high: 2 basic blocks (64); fusion   /32 | /8
    conv5_2     low: 1 bottleneck (256 -> 512), s2, DAPPM (128 -> 128)              /64
                high: 1 bottleneck (64 -> 128)                                      /8
    head        sum of both branches at 1/8; BN-ReLU-conv 3x3 (64), BN-ReLU-conv 1x1 (K)

A *basic block* is ResNet's two 3x3 convs with BN and a shortcut; the last block of a
stage leaves its sum un-activated, and each stage starts with a ReLU, as the authors' code
does, so the bilateral fusions add pre-activation features. A *bilateral fusion* adds to
the low branch the high one strided down (one 3x3 s2 conv + BN per factor of 2, ReLU
between), and to the high branch the low one compressed (1x1 + BN) and resized
bilinearly. The bottlenecks expand by 2 and end un-activated. DAPPM (deep aggregation
pyramid pooling) pools the 1/64 map with 5x5/s2, 9x9/s4, 17x17/s8 average windows and
globally, adds each level to the previous one after a 1x1 (128) and refines it by a 3x3,
concatenates the five, compresses them to 128 by a 1x1 and adds a 1x1 shortcut; its
convs are BN-ReLU-conv (pre-activation). Parameters at 19 classes: 5,695,987, as the
authors' code (ydhongHIT/DDRNet, segmentation/DDRNet_23_slim.py; the paper rounds to
5.7 M); pinned in the tests.

Training-only auxiliary head (the paper's deep supervision, weight 0.4 in its recipe):
:meth:`DDRNet.aux_heads` reads the high branch after the first fusion with the same head
as the output (64 channels; 38,355 parameters at K=19, as the authors' code). It lives
outside the model, so ``forward``, the state dict and the ONNX file stay the plain
network.

Deviations: none in the graph. The 1/16 to 1/64 maps are strided from the 1/8 map the
same way in both branches, so any input whose sides are multiples of 8 works (the model
pads to 8, not 64); bilinear resizing uses ``align_corners=False`` as the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.conv import ConvNormAct
from edgeseg.models._base import TappedSegmentationModel
from edgeseg.models._registry import register_model


@dataclass(frozen=True)
class DualStage:
    """One row of Table 1 after the stem: both branches' widths and depths."""

    low: int  # channels of the low-resolution (context) branch
    high: int  # channels of the 1/8 (detail) branch
    blocks: int  # basic blocks in each branch
    fuse: bool  # a bilateral fusion ends the stage


#: DDRNet-23-slim after ``conv3`` (planes 32): conv4 and conv5_1.
SLIM = (DualStage(128, 64, 2, True), DualStage(256, 64, 2, True))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> ConvNormAct:
    """``Conv2d (no bias) -> BN`` with "same" padding, no activation."""
    return ConvNormAct(cin, cout, k, stride, act=False)


def bn_relu_conv(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    """Pre-activation ``BN -> ReLU -> Conv2d (no bias)`` (DAPPM and the head)."""
    return nn.Sequential(
        _bn(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, bias=False)
    )


class BasicBlock(nn.Module):
    """ResNet's basic block; ``relu_out=False`` leaves the sum un-activated.

    Shapes: ``(B, cin, H, W) -> (B, cout, H / stride, W / stride)``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, relu_out: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout)
        self.shortcut = (
            conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x)) + self.shortcut(x)
        return F.relu(y) if self.relu_out else y


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 to ``2 * mid``, BN each, projected shortcut; no final ReLU.

    Shapes: ``(B, cin, H, W) -> (B, 2 mid, H / stride, W / stride)``.
    """

    def __init__(self, cin: int, mid: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(cin, mid, 1), ConvNormAct(mid, mid, 3, stride), conv_bn(mid, 2 * mid, 1)
        )
        self.shortcut = conv_bn(cin, 2 * mid, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def stage(cin: int, cout: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` basic blocks, the first strided, the last un-activated."""
    return nn.Sequential(
        *(
            BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, i < blocks - 1)
            for i in range(blocks)
        )
    )


class DAPPM(nn.Module):
    """Deep aggregation pyramid pooling: ``(B, C, h, w) -> (B, out, h, w)``."""

    #: (kernel, stride) of the average pools; 0: the global average.
    POOLS = ((5, 2), (9, 4), (17, 8), (0, 0))

    def __init__(self, channels: int, branch: int, out: int) -> None:
        super().__init__()
        self.scale0 = bn_relu_conv(channels, branch)
        self.scales = nn.ModuleList(bn_relu_conv(channels, branch) for _ in self.POOLS)
        self.process = nn.ModuleList(bn_relu_conv(branch, branch, 3) for _ in self.POOLS)
        self.compression = bn_relu_conv(branch * (len(self.POOLS) + 1), out)
        self.shortcut = bn_relu_conv(channels, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [self.scale0(x)]
        for (k, s), scale, process in zip(self.POOLS, self.scales, self.process, strict=True):
            y = x.mean((2, 3), keepdim=True) if k == 0 else F.avg_pool2d(x, k, s, k // 2)
            y = F.interpolate(scale(y), size=size, mode="bilinear", align_corners=False)
            levels.append(process(y + levels[-1]))  # each level refines the one before
        return self.compression(torch.cat(levels, dim=1)) + self.shortcut(x)


class BilateralFusion(nn.Module):
    """Exchange between the branches: low += down(high); high += resize(compress(low))."""

    def __init__(self, low: int, high: int, factor: int) -> None:
        super().__init__()
        steps: list[nn.Module] = []
        c = high
        while factor > 2:  # one 3x3 s2 conv per factor of 2, ReLU between
            steps.append(ConvNormAct(c, low // 2, 3, 2))
            c, factor = low // 2, factor // 2
        self.down = nn.Sequential(*steps, conv_bn(c, low, 3, 2))
        self.compress = conv_bn(low, high, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # low (B, Cl, H/16 or H/32, .), high (B, Ch, H/8, W/8), both pre-activation
        down = self.down(F.relu(high))
        up = self.compress(F.relu(low))
        up = F.interpolate(up, size=high.shape[-2:], mode="bilinear", align_corners=False)
        return low + down, high + up


class DDRNet(TappedSegmentationModel):
    """DDRNet: a ResNet stem to 1/8, then a 1/8 detail branch beside a deepening context
    branch, fused both ways after each stage; DAPPM on the 1/64 context; a head at 1/8.

    Stages (:meth:`stages`): ``stem`` (1/8); per dual stage ``low.i``, ``high.i``,
    ``fusions.i``; ``high_last``, ``low_last``, ``dappm``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels.
        planes: stem width (32 for the slim variant).
        rows: the dual stages after the stem.
        head: the segmentation head's width.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        planes: int = 32,
        rows: tuple[DualStage, ...] = SLIM,
        head: int = 64,
    ) -> None:
        super().__init__()
        self.output_stride = 8
        self.num_classes, self.head_width = num_classes, head
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, planes, 3, 2, 1),
            _bn(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 2, 1),
            _bn(planes),
            nn.ReLU(inplace=True),
            stage(planes, planes, 2),
            nn.ReLU(),
            stage(planes, 2 * planes, 2, stride=2),
        )
        low_in, high_in = 2 * planes, 2 * planes
        self.low, self.high, self.fusions = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, r in enumerate(rows):
            self.low.append(stage(low_in, r.low, r.blocks, stride=2))
            self.high.append(stage(high_in, r.high, r.blocks))
            self.fusions.append(BilateralFusion(r.low, r.high, 2 ** (i + 1)))
            low_in, high_in = r.low, r.high
        self.high_channels = rows[0].high
        self.low_last = Bottleneck(low_in, low_in, stride=2)  # (B, 2 Cl, H/64, W/64)
        self.high_last = Bottleneck(high_in, high_in)  # (B, 2 Ch, H/8, W/8)
        self.dappm = DAPPM(2 * low_in, 128, 2 * high_in)
        self.head = self._head(2 * high_in)
        for mod in self.modules():  # the authors' initialisation (BN: weight 1, bias 0)
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The stages in execution order, each dual stage's branches and fusion apart."""
        dual = [
            (f"{kind}.{i}", getattr(self, kind)[i])
            for i in range(len(self.low))
            for kind in ("low", "high", "fusions")
        ]
        tail = ("high_last", "low_last", "dappm", "head")
        return [("stem", self.stem), *dual, *((n, getattr(self, n)) for n in tail)]

    def _head(self, channels: int) -> nn.Sequential:
        return nn.Sequential(
            bn_relu_conv(channels, self.head_width, 3),
            _bn(self.head_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.head_width, self.num_classes, 1),
        )

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits at the (padded) input's size and the feature the auxiliary head reads."""
        low = high = self.stem(x)  # (B, 64, H/8, W/8), pre-activation
        taps: dict[str, torch.Tensor] = {}
        for i, (lo, hi, fuse) in enumerate(zip(self.low, self.high, self.fusions, strict=True)):
            low, high = fuse(lo(F.relu(low)), hi(F.relu(high)))
            if i == 0:
                taps["high"] = high  # (B, 64, H/8, W/8) after the first fusion
        high = self.high_last(F.relu(high))  # (B, 128, H/8, W/8)
        ctx = self.dappm(self.low_last(F.relu(low)))  # (B, 128, H/64, W/64)
        ctx = F.interpolate(ctx, size=high.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(high + ctx)  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False), taps

    def aux_heads(self) -> nn.ModuleDict:
        """The deep-supervision head on the high branch (training only)."""
        return nn.ModuleDict({"high": self._head(self.high_channels)})


@register_model(tags=("camvid",))
def ddrnet23_slim(num_classes: int, in_channels: int = 3) -> DDRNet:
    """DDRNet-23-slim: 5,695,987 parameters at K=19 (+38,355 in its training-only head)."""
    return DDRNet(num_classes, in_channels)
