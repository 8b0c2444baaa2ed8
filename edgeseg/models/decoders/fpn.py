"""Semantic FPN (Kirillov et al., *Panoptic Feature Pyramid Networks*, CVPR 2019, sec. 3),
a light version for CPUs.

Lateral 1x1 convs bring the four maps to ``pyramid`` channels; a top-down path adds each
(nearest-upsampled x2) into the next finer one; each level then goes through 3x3 conv-BN-ReLU
blocks to ``segment`` channels with a bilinear x2 after each, until it reaches stride 4,
where the four are summed and a 1x1 conv gives the logits. The paper uses 256/128 channels
and GroupNorm; here 96/64 and BatchNorm (a CPU budget, batch >= 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.conv import ConvNormAct


class FPNDecoder(nn.Module):
    """``feats (strides 4, 8, 16, 32) -> logits (B, K, H/4, W/4)``.

    Args:
        in_channels: the encoder's four widths.
        num_classes: K.
        pyramid: channels of the top-down pyramid.
        segment: channels of each level's segmentation branch.
    """

    stride = 4

    def __init__(
        self, in_channels: tuple[int, ...], num_classes: int, pyramid: int = 96, segment: int = 64
    ) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, pyramid, 1) for c in in_channels)
        # Level i (stride 4 * 2^i) needs max(i, 1) conv blocks, upsampling after all but the
        # stride-4 level's: i blocks of x2 bring it to stride 4.
        self.branches = nn.ModuleList(
            nn.Sequential(
                *(ConvNormAct(pyramid if j == 0 else segment, segment) for j in range(max(i, 1)))
            )
            for i in range(len(in_channels))
        )
        self.classifier = nn.Conv2d(segment, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        p = [lat(f) for lat, f in zip(self.laterals, feats, strict=True)]
        for i in range(len(p) - 2, -1, -1):  # top-down: p[i] += up(p[i + 1])
            p[i] = p[i] + F.interpolate(p[i + 1], size=p[i].shape[-2:], mode="nearest")
        outs = []
        for i, (y, branch) in enumerate(zip(p, self.branches, strict=True)):
            for block in branch.children():
                y = block(y)
                if i > 0:  # x2 after each block of the coarser levels: i of them
                    y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            outs.append(y)  # (B, segment, H/4, W/4)
        return self.classifier(torch.stack(outs).sum(0))  # (B, K, H/4, W/4)
