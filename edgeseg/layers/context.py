"""Blocks of the light context networks trained from scratch on CamVid: CGNet's
context-guided block and DABNet's depth-wise asymmetric bottleneck, with their shared
parts (BatchNorm + PReLU, input injection, the global channel gate)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "BNPReLU",
    "ContextGuided",
    "DABModule",
    "DownsampleBlock",
    "GlobalGate",
    "InputInjection",
    "conv_bn_prelu",
]

#: Both networks' BatchNorm epsilon (their code's ``eps=1e-3``).
EPS = 1e-3


class BNPReLU(nn.Sequential):
    """``BatchNorm -> PReLU`` (one slope per channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=EPS), nn.PReLU(channels))


def conv_bn_prelu(
    cin: int,
    cout: int,
    k: int | tuple[int, int] = 3,
    stride: int = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """``Conv2d (no bias, "same" padding) [-> BatchNorm -> PReLU]``."""
    kh, kw = (k, k) if isinstance(k, int) else k
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    pad = ((kh - 1) // 2 * dh, (kw - 1) // 2 * dw)
    conv = nn.Conv2d(cin, cout, (kh, kw), stride, pad, (dh, dw), groups, bias=False)
    return nn.Sequential(conv, BNPReLU(cout)) if act else nn.Sequential(conv)


class InputInjection(nn.Module):
    """The image average-pooled ``times`` times (3x3, stride 2): ``(B, 3, H/2^t, W/2^t)``."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.pools = nn.Sequential(*(nn.AvgPool2d(3, 2, 1) for _ in range(times)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pools(x)


class GlobalGate(nn.Module):
    """CGNet's f_glo: global average -> FC (ReLU) -> FC -> sigmoid, times the input."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.fc(x.mean((2, 3)))  # (B, C)
        return x * g[:, :, None, None]


class ContextGuided(nn.Module):
    """CGNet's context-guided block.

    A conv reduces the input (to ``cout / 2`` channels, 1x1; or, ``down=True``, to
    ``cout`` channels, 3x3 stride 2); a depthwise 3x3 (f_loc) and a dilated depthwise 3x3
    (f_sur) read it side by side; their concat is normalised (and, when down-sampling,
    reduced back to ``cout`` by a 1x1), gated globally (f_glo), and added to the input
    when shapes allow (``residual``).
    """

    def __init__(
        self, cin: int, cout: int, dilation: int, reduction: int, down: bool = False
    ) -> None:
        super().__init__()
        n = cout if down else cout // 2
        self.reduce_in = conv_bn_prelu(cin, n, 3, 2) if down else conv_bn_prelu(cin, n, 1)
        self.f_loc = conv_bn_prelu(n, n, 3, groups=n, act=False)
        self.f_sur = conv_bn_prelu(n, n, 3, dilation=dilation, groups=n, act=False)
        self.joint = BNPReLU(2 * n)
        self.reduce_out = conv_bn_prelu(2 * n, cout, 1, act=False) if down else nn.Identity()
        self.f_glo = GlobalGate(cout, reduction)
        self.residual = not down and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce_in(x)
        y = self.joint(torch.cat([self.f_loc(y), self.f_sur(y)], 1))
        y = self.f_glo(self.reduce_out(y))
        return x + y if self.residual else y


class DABModule(nn.Module):
    """DABNet's depth-wise asymmetric bottleneck.

    BN-PReLU, a 3x3 conv halves the channels; two depthwise branches of 3x1 then 1x3
    (one plain, one dilated by ``d``) are summed, BN-PReLU, a 1x1 conv restores the
    channels, and the input is added.
    """

    def __init__(self, channels: int, d: int) -> None:
        super().__init__()
        c = channels // 2
        self.pre = BNPReLU(channels)
        self.reduce = conv_bn_prelu(channels, c, 3)
        self.local = nn.Sequential(
            conv_bn_prelu(c, c, (3, 1), groups=c), conv_bn_prelu(c, c, (1, 3), groups=c)
        )
        self.context = nn.Sequential(
            conv_bn_prelu(c, c, (3, 1), dilation=(d, 1), groups=c),
            conv_bn_prelu(c, c, (1, 3), dilation=(1, d), groups=c),
        )
        self.post = BNPReLU(c)
        self.expand = nn.Conv2d(c, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))  # (B, C/2, H, W)
        y = self.post(self.local(y) + self.context(y))
        return x + self.expand(y)


class DownsampleBlock(nn.Module):
    """DABNet's (and ENet's) down-sampler: a 3x3 stride-2 conv, concatenated with a 2x2
    max-pool of the input when ``cout > cin``, then BN-PReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pool = cin < cout
        self.conv = nn.Conv2d(cin, cout - cin if self.pool else cout, 3, 2, 1, bias=False)
        self.norm = BNPReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.pool:
            y = torch.cat([y, nn.functional.max_pool2d(x, 2, 2)], 1)
        return self.norm(y)
