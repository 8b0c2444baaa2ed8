"""SqueezeNet's Fire module and Squeeze U-Net's transposed Fire module.

Iandola et al. 2016 (Fire); Beheshti & Johnsson, CVPRW 2020 (TransposedFire).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.conv import ConvNormAct, ConvTransposeNormAct
from edgeseg.layers.separable import SeparableConvNormAct


class Fire(nn.Module):
    """``Fire(Cin, s, e, stride)``: squeeze 1x1 Cin->s, then parallel 1x1 s->e and 3x3 s->e.

    Output: ``2e`` channels (the two expand branches concatenated). When downsampling,
    the squeeze 1x1 conv carries the stride (Squeeze U-Net's DS units), so the expensive
    3x3 runs at the lower resolution.

    Shapes: ``(B, Cin, H, W) -> (B, 2e, H/stride, W/stride)``.

    Args:
        in_channels, squeeze, expand: Cin, s, e.
        stride: of the squeeze conv.
        norm: normalisation after every conv.
        separable: the 3x3 expand as depthwise 3x3 + pointwise 1x1 (seed 001's variant).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand: int,
        stride: int = 1,
        norm: str = "batch",
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, stride=stride, norm=norm)
        self.expand1x1 = ConvNormAct(squeeze, expand, 1, norm=norm)
        conv3 = SeparableConvNormAct if separable else ConvNormAct
        self.expand3x3 = conv3(squeeze, expand, 3, norm=norm)
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

    Args:
        in_channels, squeeze, expand: Cin, s, e.
        norm: normalisation after every conv.
        separable: the 2x2 expand as a depthwise 2x2 transposed conv + pointwise 1x1.
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand: int,
        norm: str = "batch",
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.squeeze = ConvTransposeNormAct(
            in_channels, squeeze, 1, stride=2, output_padding=1, norm=norm
        )
        self.expand1x1 = ConvTransposeNormAct(squeeze, expand, 1, norm=norm)
        # Norm and ReLU act per pixel, so they may run before the crop; keeping them in the
        # conv's Sequential lets inference fold the BatchNorm into the transposed conv.
        if separable:
            self.expand2x2: nn.Module = SeparableConvNormAct(
                squeeze, expand, 2, transposed=True, norm=norm
            )
        else:
            self.expand2x2 = ConvTransposeNormAct(squeeze, expand, 2, norm=norm)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)  # (B, s, 2H, 2W)
        h, w = s.shape[-2], s.shape[-1]
        e2 = self.expand2x2(s)[:, :, :h, :w]  # (B, e, 2H+1, 2W+1) -> (B, e, 2H, 2W)
        return torch.cat([self.expand1x1(s), e2], dim=1)


class FireDeconv(nn.Module):
    """SqueezeSeg's ``FireDeconv(Cin, s, e)`` (Wu et al., ICRA 2018), in 2-D.

    Squeeze 1x1 Cin->s, a 4x4 stride-2 transposed conv s->s (padding 1) initialised as
    bilinear upsampling of each channel, then parallel 1x1 and 3x3 expand s->e,
    concatenated. The upsampling runs on the squeezed channels only, which is what makes
    it cheap. Every conv is followed by norm + ReLU (SqueezeSeg: ReLU; norm as elsewhere).

    Shapes: ``(B, Cin, H, W) -> (B, 2e, 2H, 2W)``.
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand: int,
        norm: str = "batch",
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, norm=norm)
        self.up = ConvTransposeNormAct(squeeze, squeeze, 4, stride=2, padding=1, norm=norm)
        _bilinear_init(self.up[0])  # type: ignore[arg-type]  # ConvTransposeNormAct's conv
        self.expand1x1 = ConvNormAct(squeeze, expand, 1, norm=norm)
        conv3 = SeparableConvNormAct if separable else ConvNormAct
        self.expand3x3 = conv3(squeeze, expand, 3, norm=norm)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.up(self.squeeze(x))  # (B, s, 2H, 2W)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)


def _bilinear_init(conv: nn.ConvTranspose2d) -> None:
    """Make a ``(C, C, k, k)`` transposed conv upsample each channel bilinearly (FCN's init)."""
    k = conv.kernel_size[0]
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor  # (k,)
    kernel = filt1d[:, None] * filt1d[None, :]  # (k, k)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c] = kernel
        if conv.bias is not None:
            conv.bias.zero_()
