"""Depthwise-separable convolution and transposed convolution (SegFast, MobileNet style)."""

from __future__ import annotations

from torch import nn

from edgeseg.layers.conv import ConvNormAct, ConvTransposeNormAct


class DWConv(nn.Sequential):
    """Depthwise ``k x k`` conv -> norm -> ReLU -> pointwise 1x1 -> norm -> ReLU.

    Shapes: ``(B, in, H, W) -> (B, out, H / stride, W / stride)``. Weights:
    ``in * k * k + in * out`` (the MobileNet factorisation of a ``k x k`` conv).

    Args:
        in_channels, out_channels: channels.
        kernel_size: of the depthwise conv.
        stride: of the depthwise conv.
        norm: normalisation (see :func:`~edgeseg.layers.make_norm`).
        bias: conv biases (None: only without a norm; SegFast's code keeps them).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm: str = "batch",
        bias: bool | None = None,
    ) -> None:
        super().__init__(
            ConvNormAct(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                groups=in_channels,
                norm=norm,
                bias=bias,
            ),
            ConvNormAct(in_channels, out_channels, 1, norm=norm, bias=bias),
        )


class DWConvTranspose(nn.Sequential):
    """Pointwise 1x1 -> norm -> ReLU -> depthwise 3x3 stride-2 transposed conv -> norm -> ReLU.

    The channel change happens on the low-resolution side (cheap), the upsampling per
    channel. Shapes: ``(B, in, H, W) -> (B, out, 2H - 1, 2W - 1)`` (kernel 3, padding 1);
    the caller pads to the skip's size as SegFast's code does.
    """

    def __init__(
        self, in_channels: int, out_channels: int, norm: str = "batch", bias: bool | None = None
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, 1, norm=norm, bias=bias),
            ConvTransposeNormAct(
                out_channels,
                out_channels,
                3,
                stride=2,
                padding=1,
                groups=out_channels,
                norm=norm,
                bias=bias,
            ),
        )
