"""ResNet's bottleneck residual block (FCN-ResNet50, EdgeSegNet)."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.conv import ConvNormAct


class Bottleneck(nn.Module):
    """``1x1 in->mid -> 3x3 mid->mid (stride) -> 1x1 mid->out`` with BN, + shortcut, ReLU.

    The stride sits on the 3x3 conv (ResNet v1.5, torchvision's choice); the shortcut is a
    strided 1x1 projection + BN when the shape changes, the identity otherwise.

    Shapes: ``(B, in, H, W) -> (B, out, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, mid: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, mid, 1)
        self.conv2 = ConvNormAct(mid, mid, 3, stride=stride)
        self.conv3 = ConvNormAct(mid, out_channels, 1, act=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(in_channels, out_channels, 1, stride=stride, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))
