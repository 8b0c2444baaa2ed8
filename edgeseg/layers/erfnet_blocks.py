"""ERFNet's blocks, shared by ERFNet, the ESSNet family and WSPD-Net.

As in the authors' code: every conv keeps its bias, BatchNorm uses ``eps=1e-3``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

BN_EPS = 1e-3


class Downsampler(nn.Module):
    """``cat(3x3 stride-2 conv in -> out - in, 2x2 max-pool) -> BN -> ReLU`` (ENet's initial block).

    Shapes: ``(B, in, H, W) -> (B, out, H/2, W/2)`` for even ``H, W`` (the model contract
    pads inputs so that they are).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"Downsampler needs out > in, got {in_channels} -> {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, 2, 1, bias=True)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.conv(x), self.pool(x)], dim=1)  # (B, out, H/2, W/2)
        return torch.relu(self.bn(y))

    @torch.no_grad()
    def fold_batchnorm(self) -> FoldedDownsampler:
        """The same block for inference, BatchNorm folded (eval mode: running statistics).

        The BatchNorm is per channel, so it splits at the concat: its first ``out - in``
        channels fold into the conv, the last ``in`` become a per-channel affine of the
        pooled input, kept as a depthwise 1x1 conv.
        """
        bn, n = self.bn, self.conv.out_channels
        c = bn.num_features - n
        mean, var, gamma, beta = bn.running_mean, bn.running_var, bn.weight, bn.bias
        # eval statistics and an affine BatchNorm (the type checker cannot know either)
        assert mean is not None and var is not None and gamma is not None and beta is not None

        def fold(conv: nn.Conv2d, part: slice) -> nn.Conv2d:
            stats = (mean[part], var[part], bn.eps)
            w, b = fuse_conv_bn_weights(conv.weight, conv.bias, *stats, gamma[part], beta[part])
            conv.weight, conv.bias = w, b
            return conv

        affine = nn.Conv2d(c, c, 1, groups=c).to(bn.weight)
        nn.init.ones_(affine.weight)
        nn.init.zeros_(affine.bias)  # type: ignore[arg-type]  # created with a bias
        return FoldedDownsampler(
            fold(copy.deepcopy(self.conv), slice(0, n)), self.pool, fold(affine, slice(n, None))
        )


class FoldedDownsampler(nn.Module):
    """:class:`Downsampler` with its BatchNorm folded (:meth:`Downsampler.fold_batchnorm`).

    ``cat(ReLU(conv(x)), ReLU(affine(pool(x))))``: the ReLU is elementwise, so it applies
    to each part before the concat. This keeps the whole block in int8 under ONNX Runtime:
    both ReLUs fuse into (int8) convs, and the pooled part is scaled by a depthwise 1x1
    conv instead of a BatchNormalization on the concat, which has no int8 kernel and ran
    in fp32 between dequantize/quantize steps with the max-pool before it.
    """

    def __init__(self, conv: nn.Conv2d, pool: nn.MaxPool2d, affine: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv  # (B, in, H, W) -> (B, out - in, H/2, W/2), BatchNorm folded in
        self.pool = pool
        self.affine = affine  # depthwise 1x1: the pooled channels' BatchNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.affine(self.pool(x)))
        return torch.cat([torch.relu(self.conv(x)), pooled], dim=1)  # (B, out, H/2, W/2)


class NonBottleneck1D(nn.Module):
    """ERFNet's residual block of factorised convolutions.

    ``3x1 -> ReLU -> 1x3 -> BN -> ReLU -> 3x1 (dilation d) -> ReLU -> 1x3 (dilation d) -> BN
    -> Dropout2d(p) -> + input -> ReLU``. Shapes: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: C.
        dropout: Dropout2d probability (0 disables it).
        dilation: d of the second pair.
        kernel: length of the factorised kernels (3; WSPD-Net also uses 5).
    """

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1, kernel: int = 3):
        super().__init__()
        p, pd = kernel // 2, dilation * (kernel // 2)
        c = channels
        self.conv3x1_1 = nn.Conv2d(c, c, (kernel, 1), padding=(p, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(c, c, (1, kernel), padding=(0, p), bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(
            c, c, (kernel, 1), padding=(pd, 0), dilation=(dilation, 1), bias=True
        )
        self.conv1x3_2 = nn.Conv2d(
            c, c, (1, kernel), padding=(0, pd), dilation=(1, dilation), bias=True
        )
        self.bn2 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv3x1_1(x))
        y = torch.relu(self.bn1(self.conv1x3_1(y)))
        y = torch.relu(self.conv3x1_2(y))
        y = self.dropout(self.bn2(self.conv1x3_2(y)))
        return torch.relu(y + x)


class Upsampler(nn.Sequential):
    """``3x3 stride-2 transposed conv (padding 1, output_padding 1) -> BN -> ReLU``: x2 size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, 2, 1, output_padding=1, bias=True),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )


class DWSDil(nn.Module):
    """WSPD-Net's depthwise-separable multi-dilation block (seed 002's thesis, a reading).

    ``3x1 -> ReLU -> 1x3 -> BN -> ReLU -> sum of 4 depthwise 3x3 convs with dilations
    (2, 4, 8, 16) -> pointwise 1x1 -> BN -> Dropout2d(p) -> + input -> ReLU``. The thesis
    names the block but not its rates or how the branches merge: the rates are ERFNet's
    and the branches are summed (keeps C channels, so the pointwise conv costs C x C).
    The four depthwise branches see the whole image's context at 1/8 resolution for
    ``4 * 9 * C`` weights.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(
        self, channels: int, dropout: float = 0.0, rates: tuple[int, ...] = (2, 4, 8, 16)
    ) -> None:
        super().__init__()
        c = channels
        self.conv3x1 = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3 = nn.Conv2d(c, c, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.branches = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=r, dilation=r, groups=c, bias=True) for r in rates
        )
        self.pointwise = nn.Conv2d(c, c, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv3x1(x))
        y = torch.relu(self.bn1(self.conv1x3(y)))
        # Summed explicitly from the first branch (not sum(), which starts at the int 0:
        # an "0 + tensor" node that graph tools such as PT2E quantizers cannot annotate).
        z = self.branches[0](y)
        for branch in self.branches[1:]:
            z = z + branch(y)  # (B, C, H, W)
        y = z
        y = self.dropout(self.bn2(self.pointwise(y)))
        return torch.relu(y + x)
