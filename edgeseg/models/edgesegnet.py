"""EdgeSegNet (Lin, Chwyl & Wong, "EdgeSegNet: A Compact Network for Semantic
Segmentation", 2019), as seed 001 describes and uses it.

There is no official code and the paper gives the macro-architecture only as a figure,
without channel counts, so this is a **documented reading**, not a reproduction. What
the paper and seed 001 state, and this model keeps: a single main path (no U-Net
decoder); a strided stem; *bottleneck modules* (1x1 reduce -> 3x3 -> 1x1 expand) that
shrink the channels before every 3x3 conv; *bottleneck reduction modules* that halve the
resolution; *refine modules* adapted from RefineNet that fuse a lower-resolution map into
a higher-resolution one (the long-range connections), short-range residual connections
inside the modules; and a final upsampling of the class scores. What is assumed here:

- stem: 7x7 stride-2 conv 3 -> 32 (+ BN + ReLU);
- main path rows below (channels doubling at each reduction, a 1/4 bottleneck width);
- refine module: 3x3 conv on each input to the output width, bilinear x2 of the coarser
  one, sum, ReLU, then a 3x3 conv (RefineNet's multi-resolution fusion without its
  chained residual pooling);
- head: 1x1 conv to K at 1/4 resolution, bilinear x4 (the paper's final upsampling).

This gives 1,417,419 parameters at K = 11 and an output stride of 32. Seed 001 reports
0.0077 s on a 3x64x64 input on its CPU, the fastest of its variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.bottleneck import Bottleneck
from edgeseg.layers.conv import ConvNormAct
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

STEM = 32
#: Main path, one row per stage: (out channels, bottleneck width, modules). Each stage
#: opens with a stride-2 bottleneck reduction module, then ``modules - 1`` bottleneck
#: modules; outputs at 1/4, 1/8, 1/16 and 1/32.
STAGES: tuple[tuple[int, int, int], ...] = ((64, 16, 2), (128, 32, 3), (256, 64, 3), (256, 64, 1))
#: Refine modules, coarse to fine: output channels after fusing with the 1/16, 1/8 and
#: 1/4 stage outputs.
REFINE: tuple[int, ...] = (128, 64, 32)


class RefineModule(nn.Module):
    """Fuse a coarse map into a finer one: ``conv(relu(conv(fine) + up2(conv(coarse))))``.

    Shapes: ``coarse (B, Cc, H/2, W/2)``, ``fine (B, Cf, H, W)`` -> ``(B, out, H, W)``.
    """

    def __init__(self, coarse: int, fine: int, out: int) -> None:
        super().__init__()
        self.coarse = ConvNormAct(coarse, out, 3, act=False)
        self.fine = ConvNormAct(fine, out, 3, act=False)
        self.fuse = ConvNormAct(out, out, 3)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        c = F.interpolate(
            self.coarse(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.fuse(torch.relu(c + self.fine(fine)))


class EdgeSegNet(SegmentationModel):
    """EdgeSegNet (a documented reading). Stages: ``stem``, ``stage1``..``stage4``,
    ``refine1``..``refine3``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = 2 * 2 ** len(STAGES)  # 32
        self.stem = ConvNormAct(in_channels, STEM, 7, stride=2)  # (B, 32, H/2, W/2)
        cin = STEM
        widths = []
        for i, (out, mid, modules) in enumerate(STAGES, start=1):
            blocks = [Bottleneck(cin, mid, out, stride=2)]
            blocks += [Bottleneck(out, mid, out) for _ in range(modules - 1)]
            self.add_module(f"stage{i}", nn.Sequential(*blocks))
            widths.append(out)
            cin = out
        for i, out in enumerate(REFINE, start=1):
            self.add_module(f"refine{i}", RefineModule(cin, widths[-1 - i], out))
            cin = out
        self.head = nn.Conv2d(cin, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        feats = []
        for i in range(1, len(STAGES) + 1):
            y = getattr(self, f"stage{i}")(y)  # 1/4, 1/8, 1/16, 1/32
            feats.append(y)
        y = feats.pop()  # (B, 256, H/32, W/32)
        for i in range(1, len(REFINE) + 1):
            y = getattr(self, f"refine{i}")(y, feats.pop())  # up to (B, 32, H/4, W/4)
        y = self.head(y)  # (B, K, H/4, W/4)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(tags=("seed001",))
def edgesegnet(num_classes: int, in_channels: int = 3) -> EdgeSegNet:
    """EdgeSegNet, a documented reading of the paper's figure (no official code)."""
    return EdgeSegNet(num_classes, in_channels)
