"""LR-ASPP (Howard et al., *Searching for MobileNetV3*, ICCV 2019, sec. 6.3) on any encoder.

The head of :mod:`edgeseg.models.lraspp` reading the stride-8 map as its low-level features
and the stride-32 map (the encoder's last stage, not dilated: ImageNet weights keep their
strides) as its high-level features; logits at stride 8.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.lraspp import LRASPPHead


class LRASPPDecoder(nn.Module):
    """``feats (strides 4, 8, 16, 32) -> logits (B, K, H/8, W/8)``.

    Args:
        in_channels: the encoder's four widths.
        num_classes: K.
        inter: width of the gated high-level branch (the paper's 128).
    """

    stride = 8

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, inter: int = 128) -> None:
        super().__init__()
        self.head = LRASPPHead(in_channels[1], in_channels[3], num_classes, inter)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.head(feats[1], feats[3])
