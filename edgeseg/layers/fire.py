"""SqueezeNet's Fire module and Squeeze U-Net's transposed Fire module.

Iandola et al. 2016 (Fire); Beheshti & Johnsson, CVPRW 2020 (TransposedFire).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.conv import ConvNormAct, ConvTransposeNormAct


class Fire(nn.Module):
    """``Fire(Cin, s, e, stride)``: squeeze 1x1 Cin->s, then parallel 1x1 s->e and 3x3 s->e.

    Output: ``2e`` channels (the two expand branches concatenated). When downsampling,
    the squeeze 1x1 conv carries the stride (Squeeze U-Net's DS units), so the expensive
    3x3 runs at the lower resolution.

    Shapes: ``(B, Cin, H, W) -> (B, 2e, H/stride, W/stride)``.
    """

    def __init__(
        self, in_channels: int, squeeze: int, expand: int, stride: int = 1, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, stride=stride, norm=norm)
        self.expand1x1 = ConvNormAct(squeeze, expand, 1, norm=norm)
        self.expand3x3 = ConvNormAct(squeeze, expand, 3, norm=norm)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)


class TransposedFire(nn.Module):
    """``TransposedFire(Cin, s, e)``: Squeeze U-Net's upsampling Fire module.

    A 1x1 transposed conv Cin->s with stride 2 doubles the resolution (every input pixel
    lands on the even positions of the output; ``output_padding=1`` gives exactly 2H x 2W),
    then parallel 1x1 and 2x2 transposed convs s->e at stride 1 fill the grid in and are
    concatenated. The 2x2 transposed conv is cropped to the input size, as TensorFlow's
    ``padding="same"`` does (the extra row and column are at the bottom/right).

    Shapes: ``(B, Cin, H, W) -> (B, 2e, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, squeeze: int, expand: int, norm: str = "batch") -> None:
        super().__init__()
        self.squeeze = ConvTransposeNormAct(
            in_channels, squeeze, 1, stride=2, output_padding=1, norm=norm
        )
        self.expand1x1 = ConvTransposeNormAct(squeeze, expand, 1, norm=norm)
        # Norm and ReLU act per pixel, so they may run before the crop; keeping them in the
        # conv's Sequential lets inference fold the BatchNorm into the transposed conv.
        self.expand2x2 = ConvTransposeNormAct(squeeze, expand, 2, norm=norm)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)  # (B, s, 2H, 2W)
        h, w = s.shape[-2], s.shape[-1]
        e2 = self.expand2x2(s)[:, :, :h, :w]  # (B, e, 2H+1, 2W+1) -> (B, e, 2H, 2W)
        return torch.cat([self.expand1x1(s), e2], dim=1)
