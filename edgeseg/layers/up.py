"""Decoder steps shared by the U-shaped networks."""

from __future__ import annotations

import torch
from torch import nn


class UpBlock(nn.Module):
    """One decoder step of a U-shaped network: ``fuse(cat([up(x), skip], dim=1))``.

    Shapes: ``x (B, C, H, W)`` and ``skip (B, Cs, 2H, 2W)`` -> what ``fuse`` gives at 2H x 2W.
    Without a skip (``None``) it is ``fuse(up(x))``.
    The model contract pads inputs to the network stride, so the two always match.
    """

    def __init__(self, up: nn.Module, fuse: nn.Module) -> None:
        super().__init__()
        self.up = up
        self.fuse = fuse

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is None:  # encoder-decoder networks without skip connections
            return self.fuse(self.up(x))
        return self.fuse(torch.cat([self.up(x), skip], dim=1))
