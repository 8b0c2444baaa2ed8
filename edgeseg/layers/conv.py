"""Convolution + normalisation + activation, the unit most blocks are made of."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

#: Normalisation layers a block can be built with (``norm=`` argument everywhere).
NORMS = ("batch", "group", "none")


def make_norm(norm: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """Normalisation layer by name.

    Args:
        norm: ``"batch"`` (BatchNorm2d), ``"group"`` (GroupNorm with up to 32 groups of at
            least 4 channels; independent of batch size, for batch-1 fine-tuning) or
            ``"none"`` (identity).
        channels: number of channels normalised.
        eps: numerical epsilon (ERFNet uses 1e-3).
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if norm == "group":
        groups = max(1, min(32, channels // 4))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels, eps=eps)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


#: A normalisation by name (:data:`NORMS`) or a factory ``(channels) -> module``.
Norm = str | Callable[[int], nn.Module]


def _norm(norm: Norm, channels: int, eps: float) -> nn.Module:
    return make_norm(norm, channels, eps) if isinstance(norm, str) else norm(channels)


def _act(act_layer: Callable[..., nn.Module]) -> nn.Module:
    """``act_layer(inplace=True)`` where it takes that flag (ReLU, ReLU6, Hardswish, SiLU),
    else ``act_layer()``."""
    takes_inplace = "inplace" in inspect.signature(act_layer).parameters
    return act_layer(inplace=True) if takes_inplace else act_layer()


class ConvNormAct(nn.Sequential):
    """``Conv2d -> norm -> activation``, shaped as torchvision's ``Conv2dNormActivation``
    and timm's ``ConvNormAct``: children ``0`` (conv), ``1`` (norm), ``2`` (activation,
    absent when there is none), so every family's state dict has the same keys.

    The convolution has a bias only when there is no normalisation after it (a bias
    before BatchNorm is cancelled by the mean subtraction, so it would be a dead
    parameter), unless ``bias=True`` asks for one: some released models (SegFast) keep
    those biases, and their parameter counts and weights include them.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups: the conv's.
        padding: default "same" for odd kernels, ``dilation * (k - 1) // 2``.
        norm: a name of :data:`NORMS` or a factory ``(channels) -> module``.
        act: ``False`` for no activation (the same as ``act_layer=None``).
        bias: the conv's bias; default: only without a normalisation.
        act_layer: the activation's class (``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardswish``).
        eps: the named normalisation's epsilon (EfficientNet-Lite: 1e-3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        norm: Norm = "batch",
        act: bool = True,
        bias: bool | None = None,
        *,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        eps: float = 1e-5,
    ) -> None:
        if padding is None:  # "same" padding for odd kernels
            k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            d = (dilation, dilation) if isinstance(dilation, int) else dilation
            padding = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias=(norm == "none") if bias is None else bias,
        )
        layers: list[nn.Module] = [conv, _norm(norm, out_channels, eps)]
        if act and act_layer is not None:
            layers.append(_act(act_layer))
        super().__init__(*layers)


class ConvTransposeNormAct(nn.Sequential):
    """``ConvTranspose2d -> norm -> ReLU`` (bias only without normalisation, or if asked)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        groups: int = 1,
        norm: str = "batch",
        act: bool = True,
        bias: bool | None = None,
    ) -> None:
        conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            output_padding,
            groups,
            bias=(norm == "none") if bias is None else bias,
        )
        layers: list[nn.Module] = [conv, make_norm(norm, out_channels)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
