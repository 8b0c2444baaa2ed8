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


class SeparableConvNormAct(nn.Sequential):
    """Keras-style separable conv: depthwise ``k x k`` -> pointwise 1x1 -> norm -> ReLU.

    Unlike :class:`DWConv` there is no norm or activation between the two convs (Keras'
    ``SeparableConv2D``, as the depthwise-separable Squeeze U-Net of seed 001 uses), so it
    is a drop-in factorisation of one ``ConvNormAct``. With ``transposed=True`` the
    depthwise step is a transposed conv (the factorisation of a ``ConvTranspose2d``).

    Shapes: ``(B, in, H, W) -> (B, out, H', W')`` with ``H', W'`` those of the dense conv it
    replaces. Weights: ``in * k * k + in * out``.

    Args:
        in_channels, out_channels: channels.
        kernel_size: of the depthwise conv.
        stride: of the depthwise conv.
        padding: of the depthwise conv; None: "same" for odd kernels (0 when transposed).
        output_padding: transposed only.
        transposed: depthwise step as a transposed conv.
        norm: normalisation after the pointwise conv.
        act: ReLU at the end.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        output_padding: int = 0,
        transposed: bool = False,
        norm: str = "batch",
        act: bool = True,
    ) -> None:
        if transposed:
            depthwise: nn.Module = nn.ConvTranspose2d(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                padding or 0,
                output_padding,
                groups=in_channels,
                bias=False,
            )
        else:
            pad = (kernel_size - 1) // 2 if padding is None else padding
            depthwise = nn.Conv2d(
                in_channels, in_channels, kernel_size, stride, pad, groups=in_channels, bias=False
            )
        super().__init__(
            depthwise, *ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act).children()
        )
