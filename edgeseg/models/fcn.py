"""FCN on a ResNet-50 body (seed 003, "edge optimisation" of FCN and U-Net; Long et al.,
CVPR 2015 for FCN-32s; He et al., CVPR 2016 for ResNet).

Follows ``../shared/spec/ARCHITECTURES.md`` section 5: a 7x7 stride-2 conv with bias ->
BN -> ReLU -> 3x3 stride-2 max-pool, bottleneck stages of [3, 4, 6, 3] blocks (the
stride on the 3x3 conv, a projection shortcut in each stage's first block), a 1x1 conv
2048 -> K and bilinear upsampling x32.

The reference adds a 1x1 conv K -> K followed by a sigmoid after the classifier. That
layer is kept only with ``head_sigmoid=True`` (the reference configuration:
23,534,915 trainable parameters at K = 13): it outputs per-class probabilities rather
than logits, so it breaks the edgeseg contract (a softmax cross-entropy on sigmoid
outputs trains badly), and without the sigmoid a 1x1 conv after a 1x1 conv is one linear
map. The default network therefore ends at the 2048 -> K classifier: 23,534,733
parameters at K = 13. Inputs are padded to a multiple of 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.bottleneck import Bottleneck
from edgeseg.layers.conv import ConvNormAct
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: ResNet-50 stages: (bottleneck width, blocks, stride of the first block).
RESNET50: tuple[tuple[int, int, int], ...] = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
EXPANSION = 4


class FCNResNet(SegmentationModel):
    """FCN-32s on ResNet. Stages: ``stem``, ``layer1``..``layer4``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels.
        stages: bottleneck rows ``(width, blocks, stride)``; default ResNet-50.
        head_sigmoid: append the reference's 1x1 K -> K conv + sigmoid (probabilities).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stages: tuple[tuple[int, int, int], ...] = RESNET50,
        head_sigmoid: bool = False,
    ) -> None:
        super().__init__()
        self.output_stride = 4 * 2 ** sum(1 for _, _, s in stages if s > 1)  # 32
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, 64, 7, stride=2, bias=True),  # (B, 64, H/2, W/2)
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 64, H/4, W/4)
        )
        cin = 64
        for i, (width, blocks, stride) in enumerate(stages, start=1):
            out = width * EXPANSION
            layer = [Bottleneck(cin, width, out, stride)]
            layer += [Bottleneck(out, width, out) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            cin = out
        head: list[nn.Module] = [nn.Conv2d(cin, num_classes, 1)]
        if head_sigmoid:
            head += [nn.Conv2d(num_classes, num_classes, 1), nn.Sigmoid()]
        self.head = nn.Sequential(*head)
        self.num_stages = len(stages)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for i in range(1, self.num_stages + 1):
            y = getattr(self, f"layer{i}")(y)  # layer4: (B, 2048, H/32, W/32)
        y = self.head(y)  # (B, K, H/32, W/32)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model(tags=("seed003",))
def fcn_resnet50(num_classes: int, in_channels: int = 3, head_sigmoid: bool = False) -> FCNResNet:
    """FCN-32s on ResNet-50 (seed 003): 23,534,733 parameters at K = 13 (+182: sigmoid head)."""
    return FCNResNet(num_classes, in_channels, head_sigmoid=head_sigmoid)
