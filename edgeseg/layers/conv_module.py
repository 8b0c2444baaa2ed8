"""The ESSNet thesis' Conv-modules (layers D, DGC, DGCS), channel shuffle and UPS upsampler."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.erfnet_blocks import BN_EPS


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle as a module: ``(B, g*n, H, W)`` -> interleave the groups.

    Channel ``i * n + j`` (group ``i``, member ``j``) moves to ``j * g + i``. A module, not a
    functional call, so that pruning and grouping tools see it and do not treat it as the
    identity.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        # (B, g, C/g, H, W) -> swap -> (B, C/g, g, H, W) -> (B, C, H, W)
        return x.reshape(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def parse_layer(layer: str) -> int:
    """``"D"`` -> 1 group, ``"DG2"`` / ``"DG4"`` / ``"DG8"`` -> 2 / 4 / 8 groups."""
    text = layer.upper()
    if text == "D":
        return 1
    if text.startswith("DG") and text[2:].isdigit() and int(text[2:]) > 1:
        return int(text[2:])
    raise ValueError(f"layer must be 'D' or 'DG<groups>' (e.g. 'DG2'), got {layer!r}")


class ConvModule(nn.Module):
    """Conv-module D / DGC / DGCS (thesis section 3.4), the ESSNet replacement of non-bt-1D.

    ``dw 3x3 -> BN -> ReLU -> pw 1x1 (groups g) -> BN -> ReLU [-> shuffle(g)] -> dw 3x3
    (dilation d) -> BN -> ReLU -> pw 1x1 (groups g) -> BN -> Dropout2d -> + input -> ReLU``.
    Shapes: ``(B, C, H, W) -> (B, C, H, W)``. Every conv has a bias, BN eps is 1e-3 (the
    reference code). The two pointwise convs are ``pw1`` and ``pw2``: gradual grouping
    masks them.

    Args:
        channels: C.
        dilation: d of the second depthwise conv.
        dropout: Dropout2d probability.
        groups: g of the pointwise convs (1: layer D).
        shuffle: channel shuffle after the first pointwise conv (DGCS).
    """

    def __init__(
        self,
        channels: int,
        dilation: int = 1,
        dropout: float = 0.0,
        groups: int = 1,
        shuffle: bool = False,
    ) -> None:
        super().__init__()
        c = channels
        if c % groups:
            raise ValueError(f"groups={groups} does not divide {c} channels")
        self.dw1 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.pw1 = nn.Conv2d(c, c, 1, groups=groups, bias=True)
        self.bn2 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.shuffle = ChannelShuffle(groups) if shuffle and groups > 1 else nn.Identity()
        self.dw2 = nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c, bias=True)
        self.bn3 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.pw2 = nn.Conv2d(c, c, 1, groups=groups, bias=True)
        self.bn4 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.dw1(x)))
        y = self.shuffle(torch.relu(self.bn2(self.pw1(y))))
        y = torch.relu(self.bn3(self.dw2(y)))
        y = self.dropout(self.bn4(self.pw2(y)))
        return torch.relu(y + x)


class UPS(nn.Sequential):
    """ESSNet's light upsampler: 1x1 stride-2 transposed conv (output_padding 1) -> BN -> ReLU.

    Shapes: ``(B, in, H, W) -> (B, out, 2H, 2W)``; every other output pixel comes from the
    bias alone, the convolutions after it fill them in.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 1, 2, output_padding=1, bias=True),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )
