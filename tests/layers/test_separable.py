"""Depthwise-separable conv, its transposed form and Spark: shapes and weight counts."""

from __future__ import annotations

import torch

from edgeseg.layers import DWConv, DWConvTranspose, Spark


def _weights(m: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in m.named_parameters() if p.ndim == 4)


def test_dwconv() -> None:
    m = DWConv(16, 32, 3, stride=2)
    assert m(torch.randn(1, 16, 15, 20)).shape == (1, 32, 8, 10)
    assert _weights(m) == 16 * 9 + 16 * 32  # depthwise + pointwise
    assert m[0][0].groups == 16


def test_dwconv_transpose() -> None:
    m = DWConvTranspose(32, 16)
    assert m(torch.randn(1, 32, 6, 7)).shape == (1, 16, 11, 13)  # 2H - 1
    assert _weights(m) == 32 * 16 + 16 * 9
    assert m[1][0].groups == 16


def test_spark_concatenates_branches() -> None:
    m = Spark(64, 16, 24, 40)
    assert m(torch.randn(2, 64, 9, 9)).shape == (2, 64, 9, 9)
    plain = Spark(64, 16, 24, 40, separable=False)
    assert _weights(plain) == 64 * 16 + 16 * 24 + 16 * 40 * 9
    assert _weights(m) == 64 * 16 + 16 * 24 + 16 * 9 + 16 * 40
