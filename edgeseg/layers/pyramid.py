"""Pyramid pooling (PSPNet) on a light encoder, as in the ESSNet thesis section 4.2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.erfnet_blocks import BN_EPS


class PyramidPooling(nn.Module):
    """Average-pool at several scales, project 1x1 to C/4, upsample, concatenate with input.

    The thesis pools to 1/8, 1/4, 1/2 and 1x the feature map's size: here windows of
    8, 4, 2 and 1 pixels (``ceil_mode``, so any size works and export stays static), each
    followed by 1x1 conv -> BN -> ReLU to ``C / 4`` channels and bilinear upsampling back.
    Shapes: ``(B, C, H, W) -> (B, 2C, H, W)`` for four levels.

    Args:
        channels: C.
        windows: pooling windows (pixels) of the levels.
    """

    def __init__(self, channels: int, windows: tuple[int, ...] = (8, 4, 2, 1)) -> None:
        super().__init__()
        self.windows = windows
        out = channels // len(windows)
        self.projections = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, out, 1, bias=True),
                nn.BatchNorm2d(out, eps=BN_EPS),
                nn.ReLU(inplace=True),
            )
            for _ in windows
        )
        self.out_channels = channels + out * len(windows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        for w, proj in zip(self.windows, self.projections, strict=True):
            y = F.avg_pool2d(x, w, w, ceil_mode=True) if w > 1 else x  # (B, C, H/w, W/w)
            y = proj(y)  # (B, C/4, H/w, W/w)
            if w > 1:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            feats.append(y)
        return torch.cat(feats, dim=1)  # (B, C + 4 * C/4, H, W)
