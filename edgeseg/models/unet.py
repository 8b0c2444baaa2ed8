"""U-Net (Ronneberger et al., MICCAI 2015) as the Squeeze U-Net paper's baseline.

The baseline of Beheshti & Johnsson (CVPRW 2020), Tables 3 and 4: two 3x3 convs per level
at 64/128/256/512/1024 channels, 2x2 max-pool down, 2x2 stride-2 transposed conv up,
concatenated skip, two 3x3 convs, 1x1 -> K. Conv weights: 31,024,832 + 64K.

Choices: ``norm="batch"`` (default) adds BatchNorm after each conv (the original had none;
``norm="none"`` gives that, with conv biases). Convs are padded ("same"), as in the
Squeeze U-Net paper's baseline, not the original valid-conv U-Net with cropping.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers import ConvNormAct, UpBlock
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: Channels per level, from full resolution down to the bottleneck.
WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 1024)


def _double_conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        ConvNormAct(cin, cout, 3, norm=norm), ConvNormAct(cout, cout, 3, norm=norm)
    )


class UNet(SegmentationModel):
    """U-Net with stages ``stem, ds1..ds4, us1..us3, head`` (same names as Squeeze U-Net).

    ``dsN`` is max-pool + two 3x3 convs; ``usN`` is the 2x2 transposed conv, concat and two
    3x3 convs; ``head`` is the last up step at full resolution plus the 1x1 classifier.

    Args:
        num_classes: K.
        in_channels: input channels.
        norm: ``"batch"`` (default), ``"group"`` or ``"none"`` (original: bias, no norm).
        widths: channels per level; default :data:`WIDTHS`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        norm: str = "batch",
        widths: tuple[int, ...] = WIDTHS,
    ) -> None:
        super().__init__()
        self.output_stride = 2 ** (len(widths) - 1)
        self.num_downs = len(widths) - 1
        self.stem = _double_conv(in_channels, widths[0], norm)
        for i in range(1, len(widths)):
            self.add_module(
                f"ds{i}",
                nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i - 1], widths[i], norm)),
            )
        bias = norm == "none"
        for i in range(1, self.num_downs):
            cin, cout = widths[-i], widths[-i - 1]
            up = nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=bias)
            self.add_module(f"us{i}", UpBlock(up, _double_conv(2 * cout, cout, norm)))
        c1, c0 = widths[1], widths[0]
        self.head = UpBlock(
            nn.ConvTranspose2d(c1, c0, 2, stride=2, bias=bias),
            nn.Sequential(_double_conv(2 * c0, c0, norm), nn.Conv2d(c0, num_classes, 1)),
        )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]  # (B, 64, H, W)
        for i in range(1, self.num_downs + 1):
            skips.append(getattr(self, f"ds{i}")(skips[-1]))  # (B, w_i, H/2^i, W/2^i)
        y = skips.pop()
        for i in range(1, self.num_downs):
            y = getattr(self, f"us{i}")(y, skips.pop())
        return self.head(y, skips.pop())  # (B, K, H, W)


@register_model(tags=("paper",))
def unet(num_classes: int, in_channels: int = 3, norm: str = "batch") -> UNet:
    """U-Net baseline of the Squeeze U-Net paper (31.0 M conv weights + 64K)."""
    return UNet(num_classes, in_channels, norm=norm)
