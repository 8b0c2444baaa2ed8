"""L3U-Net (Erman, Ulkar & Uyanik, "L^3U-net: Low-Latency Lightweight U-net Based Image
Segmentation Model for Parallel CNN Processors", 2022), as seed 001 uses it.

Follows ``../shared/spec/ARCHITECTURES.md`` section 2. The input is *folded*: each 4x4
pixel block becomes 48 channels at a quarter of the resolution, so the whole network
runs on small maps (the design goal: a CNN accelerator with 64 parallel processors and
little memory per processor). The last layer predicts 16 K channels that are unfolded
back into K x H x W, one channel per class and pixel phase.

Rows (channels at the folded resolution h = H/4)::

    prep    1x1 48->64, 1x1 64->64, 1x1 64->32                  h
    enc0    3x3 32->8                                            h
    enc1    max-pool, 3x3 8->28                                  h/2
    enc2    max-pool, 3x3 28->56                                 h/4
    enc3    max-pool, 3x3 56->112                                h/8
    up1..3  3x3 stride-2 transposed 112->56 / 56->28 / 28->8, concat enc2 / enc1 / enc0,
            3x3 112->56 / 56->28 / 16->48                        h/4 .. h
    dec0    3x3 48->64                                           h
    out     1x1 64->64 x 3 (no ReLU on the third), 1x1 64->16K, unfold      H

Every conv keeps its bias and is followed by BatchNorm without affine parameters and a
ReLU (the MAX78000 training code's fused layers, whose BN folds into the conv). 279,084
parameters at K = 4 (the spec's figure). The output stride is 32 (fold by 4, three
pools); other sizes are padded. Deviation: the reference quantises to 8 bits during
training for its accelerator; edgeseg trains in fp32 (its int8 path is post-training).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.layers.fold import Fold, Unfold
from edgeseg.layers.up import UpBlock
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

FOLD = 4
#: Encoder rows (in, out); every row after the first starts with a 2x2 max-pool.
ENCODER: tuple[tuple[int, int], ...] = ((32, 8), (8, 28), (28, 56), (56, 112))
#: Decoder rows (in, up_out, fused_out): transposed conv in->up_out, concat the encoder
#: output of the same scale (up_out channels), 3x3 conv 2 * up_out -> fused_out.
DECODER: tuple[tuple[int, int, int], ...] = ((112, 56, 56), (56, 28, 28), (28, 8, 48))


def _unit(cin: int, cout: int, k: int, act: bool = True, transposed: bool = False) -> nn.Sequential:
    """Conv (with bias) -> BatchNorm(affine=False) [-> ReLU], as the MAX78000 layers."""
    if transposed:  # stride-2 3x3 transposed conv: exactly doubles the size
        conv: nn.Module = nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)
    else:
        conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    layers = [conv, nn.BatchNorm2d(cout, affine=False)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class L3UNet(SegmentationModel):
    """L3U-Net. Stages: ``prep`` (fold + 1x1 rows), ``enc0``..``enc3``, ``up1``..``up3``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels (folded to 16x as many).
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = FOLD * 2 ** (len(ENCODER) - 1)
        folded = FOLD * FOLD * in_channels
        # The fold sits in the same Sequential as the 1x1 conv after it, so that
        # edgeseg.deploy.rewrites.fuse_folding can merge the two into one 4x4 stride-4 conv.
        self.prep = nn.Sequential(
            Fold(FOLD), _unit(folded, 64, 1), _unit(64, 64, 1), _unit(64, 32, 1)
        )
        for i, (cin, cout) in enumerate(ENCODER):
            pool = [nn.MaxPool2d(2)] if i else []
            self.add_module(f"enc{i}", nn.Sequential(*pool, _unit(cin, cout, 3)))
        for i, (cin, up, cout) in enumerate(DECODER, start=1):
            block = UpBlock(_unit(cin, up, 3, transposed=True), _unit(2 * up, cout, 3))
            self.add_module(f"up{i}", block)
        self.head = nn.Sequential(
            _unit(DECODER[-1][2], 64, 3),  # dec0
            _unit(64, 64, 1),
            _unit(64, 64, 1),
            _unit(64, 64, 1, act=False),
            nn.Conv2d(64, FOLD * FOLD * num_classes, 1),  # (B, 16K, H/4, W/4)
            Unfold(FOLD),  # (B, K, H, W)
        )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.prep(x)  # fold, then 1x1 rows: (B, 32, H/4, W/4)
        feats = []
        for i in range(len(ENCODER)):
            y = getattr(self, f"enc{i}")(y)  # enc0 8 @ H/4 ... enc3 112 @ H/32
            feats.append(y)
        feats.pop()  # the bottleneck has no skip
        for i in range(1, len(DECODER) + 1):
            y = getattr(self, f"up{i}")(y, feats.pop())
        return self.head(y)


@register_model(tags=("seed001",))
def l3unet(num_classes: int, in_channels: int = 3) -> L3UNet:
    """L3U-Net with data folding (seed 001): 279,084 parameters at K = 4."""
    return L3UNet(num_classes, in_channels)
