"""SegFast's Spark module: a Fire module whose 3x3 expand is depthwise-separable."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.conv import ConvNormAct
from edgeseg.layers.separable import DWConv


class Spark(nn.Module):
    """``squeeze 1x1 (in -> s)``, then ``[1x1 (s -> e1), DWConv 3x3 (s -> e3)]`` concatenated.

    Shapes: ``(B, in, H, W) -> (B, e1 + e3, H, W)``. With ``separable=False`` the 3x3 expand
    is a plain conv: SegFast-Basic's module (a Fire module with normalisation).

    Args:
        in_channels: input channels.
        squeeze: ``s``.
        expand1: ``e1``, channels of the 1x1 branch.
        expand3: ``e3``, channels of the 3x3 branch.
        separable: depthwise-separable 3x3 branch (SegFast) or plain (SegFast-Basic).
        norm: normalisation.
        bias: conv biases (None: only without a norm).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1: int,
        expand3: int,
        separable: bool = True,
        norm: str = "batch",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, norm=norm, bias=bias)
        self.expand1 = ConvNormAct(squeeze, expand1, 1, norm=norm, bias=bias)
        self.expand3: nn.Module = (
            DWConv(squeeze, expand3, 3, norm=norm, bias=bias)
            if separable
            else ConvNormAct(squeeze, expand3, 3, norm=norm, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)  # (B, s, H, W)
        return torch.cat([self.expand1(s), self.expand3(s)], dim=1)  # (B, e1 + e3, H, W)
