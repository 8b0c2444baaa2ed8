"""MobileNetV3's blocks (Howard et al., *Searching for MobileNetV3*, ICCV 2019).

An inverted residual expands a thin input with a 1x1 conv, filters it with a depthwise
``k x k`` conv (dilated where the network keeps resolution), optionally re-weights its
channels with a squeeze-and-excitation gate, and projects back with a linear 1x1 conv;
a residual joins input and output when their shapes match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockRow", "InvertedResidual", "SqueezeExcite", "conv_bn_act", "make_divisible"]

#: MobileNetV3's BatchNorm epsilon (torchvision's ``eps=0.001``).
BN_EPS = 1e-3


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor``, never below 90 % of ``v`` (the MobileNet
    family's channel rule)."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


def conv_bn_act(
    cin: int,
    cout: int,
    k: int = 1,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.Hardswish,
) -> nn.Sequential:
    """``Conv2d (no bias) -> BatchNorm -> act`` with "same" padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 * dilation, dilation, groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global average -> 1x1 (ReLU) -> 1x1 -> hard sigmoid, times the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = nn.ReLU(inplace=True), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


@dataclass(frozen=True)
class BlockRow:
    """One row of the paper's Tables 1-2: an inverted residual block."""

    cin: int  # input channels
    k: int  # depthwise kernel size
    exp: int  # expanded channels
    cout: int  # output channels
    se: bool  # squeeze-and-excitation
    act: str  # "RE" (ReLU) or "HS" (hard swish)
    stride: int  # 1 or 2 (replaced by dilation in a dilated stage)


class InvertedResidual(nn.Module):
    """MobileNetV3's bottleneck for one :class:`BlockRow` (``dilation > 1``: stride 1)."""

    def __init__(self, row: BlockRow, dilation: int = 1) -> None:
        super().__init__()
        act = nn.ReLU if row.act == "RE" else nn.Hardswish
        stride = 1 if dilation > 1 else row.stride
        self.use_res = stride == 1 and row.cin == row.cout
        layers: list[nn.Module] = []
        if row.exp != row.cin:
            layers.append(conv_bn_act(row.cin, row.exp, 1, act=act))
        layers.append(conv_bn_act(row.exp, row.exp, row.k, stride, dilation, row.exp, act))
        if row.se:
            layers.append(SqueezeExcite(row.exp, make_divisible(row.exp // 4)))
        layers.append(conv_bn_act(row.exp, row.cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y
