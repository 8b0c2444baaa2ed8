"""Fast-SCNN (Poudel, Liwicki and Cipolla, *Fast-SCNN: Fast Semantic Segmentation Network*,
BMVC 2019), its Table 1 as rows::

    learning to downsample  conv 3x3 s2 (32), DSConv s2 (48), DSConv s2 (64)        /8
    global features         bottlenecks (t, c, n, s) = (6, 64, 3, 2), (6, 96, 3, 2),
                            (6, 128, 3, 1); pyramid pooling (128)                  /32
    feature fusion          1/32 branch: bilinear x4, depthwise 3x3 (dilation 4), 1x1;
                            1/8 branch: 1x1; sum, ReLU (128)                        /8
    classifier              2 x DSConv (128), dropout 0.1, 1x1 conv (K); bilinear x8

Every conv is followed by BatchNorm (eps 1e-3 in the bottlenecks: edgeseg's MobileNet
block) and, but for the linear bottleneck projections and the two 1x1 convs before the
fusion's sum, ReLU. Parameters at 19 classes: 1,138,051, as the widely used reference code
(Tramac/Fast-SCNN-pytorch, without its auxiliary layer; the paper rounds to 1.11 M);
pinned in the tests.

Training-only auxiliary heads (the paper's section 4.1: losses at the end of the learning
to downsample and of the global feature extractor, weight 0.4): :meth:`FastSCNN.aux_heads`
builds one per tap, conv 3x3 (32) + BN + ReLU + dropout 0.1 + 1x1 (K), the reference
code's head (the paper does not give one). They live outside the model, so ``forward``,
the state dict and the ONNX file stay the plain network.

Deviations: the pyramid pooling's bins 1, 2, 3 and 6 are read as a global average and
average pools of 6, 4 and 2 pixel windows (ceil mode): the sizes of those bins on the
12x15 map of a 360x480 input, and fixed windows keep the exported graph valid for any
input size (adaptive pools to 2, 3 or 6 bins do not export with dynamic shapes). The
fusion's depthwise conv is dilated by 4 as the paper's Table 3 says (the reference code
does not dilate it; the parameters are the same). Bilinear resizing uses
``align_corners=False`` like every edgeseg model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.conv import ConvNormAct
from edgeseg.layers.mobilenet import BlockRow, InvertedResidual
from edgeseg.models._base import TappedSegmentationModel
from edgeseg.models._registry import register_model

R = BlockRow
#: The global feature extractor's bottlenecks (Table 1: t = 6; c; n; s), one row per block.
GLOBAL: tuple[BlockRow, ...] = (
    R(64, 3, 384, 64, False, "RE", 2),
    R(64, 3, 384, 64, False, "RE", 1),
    R(64, 3, 384, 64, False, "RE", 1),
    R(64, 3, 384, 96, False, "RE", 2),
    R(96, 3, 576, 96, False, "RE", 1),
    R(96, 3, 576, 96, False, "RE", 1),
    R(96, 3, 576, 128, False, "RE", 1),
    R(128, 3, 768, 128, False, "RE", 1),
    R(128, 3, 768, 128, False, "RE", 1),
)
#: Pyramid pooling windows in pixels of the 1/32 map (0: the global average).
PPM_WINDOWS = (0, 6, 4, 2)
#: Auxiliary (training-only) heads: tap -> channels.
TAPS = {"ltd": 64, "gfe": 128}


def cbr(
    cin: int,
    cout: int,
    k: int = 1,
    stride: int = 1,
    groups: int = 1,
    dilation: int = 1,
    relu: bool = True,
    bias: bool = False,
) -> ConvNormAct:
    """``Conv2d -> BatchNorm [-> ReLU]`` with "same" padding."""
    return ConvNormAct(cin, cout, k, stride, None, dilation, groups, act=relu, bias=bias)


def dsconv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise-separable conv: depthwise 3x3 (stride) + BN + ReLU, 1x1 + BN + ReLU."""
    return nn.Sequential(cbr(cin, cin, 3, stride, groups=cin), cbr(cin, cout))


class PyramidPoolingModule(nn.Module):
    """PSPNet's pooling: each level pooled, 1x1 to C/4, upsampled; concat; 1x1 to ``out``.

    Shapes: ``(B, C, H, W) -> (B, out, H, W)``.
    """

    def __init__(self, channels: int, out: int, windows: tuple[int, ...] = PPM_WINDOWS) -> None:
        super().__init__()
        self.windows = windows
        self.levels = nn.ModuleList(cbr(channels, channels // len(windows)) for _ in windows)
        self.project = cbr(2 * channels, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        for w, level in zip(self.windows, self.levels, strict=True):
            y = x.mean((2, 3), keepdim=True) if w == 0 else F.avg_pool2d(x, w, w, ceil_mode=True)
            y = level(y)  # (B, C/4, h, w): h = 1 for the global level
            feats.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.project(torch.cat(feats, dim=1))  # (B, 2C -> out, H, W)


class FeatureFusion(nn.Module):
    """Sum of the 1/8 features (1x1) and the upsampled 1/32 features (dw 3x3 d4, 1x1)."""

    def __init__(self, high: int, low: int, out: int, scale: int = 4) -> None:
        super().__init__()
        self.low = nn.Sequential(
            cbr(low, out, 3, groups=low, dilation=scale), cbr(out, out, relu=False, bias=True)
        )
        self.high = cbr(high, out, relu=False, bias=True)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        # high (B, 64, H/8, W/8); low (B, 128, H/32, W/32) resized to high's size
        low = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
        return F.relu(self.high(high) + self.low(low))  # (B, out, H/8, W/8)


class FastSCNN(TappedSegmentationModel):
    """Fast-SCNN: a shared learning-to-downsample stem feeding a 1/8 and a 1/32 branch.

    Stages: ``downsample`` (1/8), ``features`` (bottlenecks + pyramid pooling, 1/32),
    ``fusion`` (1/8), ``classifier``. Output stride 32.

    Args:
        num_classes: K.
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = 32
        self.num_classes = num_classes
        self.downsample = nn.Sequential(
            cbr(in_channels, 32, 3, 2), dsconv(32, 48, 2), dsconv(48, 64, 2)
        )
        self.features = nn.Sequential(
            *(InvertedResidual(r) for r in GLOBAL), PyramidPoolingModule(128, 128)
        )
        self.fusion = FeatureFusion(64, 128, 128)
        self.classifier = nn.Sequential(
            dsconv(128, 128), dsconv(128, 128), nn.Dropout(0.1), nn.Conv2d(128, num_classes, 1)
        )

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits at the (padded) input's size and the features the auxiliary heads read."""
        taps = {"ltd": self.downsample(x)}  # (B, 64, H/8, W/8)
        taps["gfe"] = self.features(taps["ltd"])  # (B, 128, H/32, W/32)
        y = self.classifier(self.fusion(taps["ltd"], taps["gfe"]))  # (B, K, H/8, W/8)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False), taps

    def aux_heads(self) -> nn.ModuleDict:
        """The two auxiliary heads (training only), keyed by the tap they read."""
        k = self.num_classes
        return nn.ModuleDict(
            {
                t: nn.Sequential(cbr(c, 32, 3), nn.Dropout(0.1), nn.Conv2d(32, k, 1))
                for t, c in TAPS.items()
            }
        )


@register_model(tags=("camvid",))
def fastscnn(num_classes: int, in_channels: int = 3) -> FastSCNN:
    """Fast-SCNN: 1,138,051 parameters at K=19 (+56,678 in its training-only heads)."""
    return FastSCNN(num_classes, in_channels)
