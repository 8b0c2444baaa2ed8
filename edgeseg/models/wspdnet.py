"""WSPD-Net (seed 002's thesis, chapter 4): ERFNet's layout with wider kernels early and
depthwise-separable multi-dilation blocks at 1/8 resolution. The thesis gives no code;
this follows ``../shared/spec/ARCHITECTURES.md`` section 4::

    DS(3, 16), 3 x nb3(16)                                   /2
    DS(16, 64), 2 x nb5(64)                                  /4
    DS(64, 128), 2 x DWS-Dil(128)                            /8
    Up(128, 64), 2 x nb5(64), Up(64, 16), 2 x nb3(16)        /2
    2x2 stride-2 transposed conv 16 -> K                     /1

``nb3`` / ``nb5`` are ERFNet's non-bottleneck-1D with 3x1/1x3 or 5x1/1x5 kernels.
Documented reading (the thesis leaves these open): DWS-Dil's dilations are ERFNet's
(2, 4, 8, 16) and its four depthwise branches are summed (see
:class:`~edgeseg.layers.DWSDil`); dropout 0.03 at 1/4 and 0.3 at 1/8 as in ERFNet. The
result has 716,288 parameters at K = 20, inside the thesis' "about 0.67-0.72 M".
Reported: 69.72 mIoU on Cityscapes val, 51 FPS on a GTX 1080Ti.
"""

from __future__ import annotations

from edgeseg.layers.erfnet_blocks import DWSDil, NonBottleneck1D
from edgeseg.models._registry import register_model
from edgeseg.models.erfnet import ROW_BLOCKS, ERFNet

#: Rows as in ``erfnet.py``: ("ds", in, out), ("nb", C, dropout, dilation, kernel),
#: ("dwsdil", C, dropout), ("up", in, out).
ENCODER: tuple[tuple, ...] = (
    ("ds", 3, 16),
    *(("nb", 16, 0.0, 1, 3),) * 3,
    ("ds", 16, 64),
    *(("nb", 64, 0.03, 1, 5),) * 2,
    ("ds", 64, 128),
    *(("dwsdil", 128, 0.3),) * 2,
)
DECODER: tuple[tuple, ...] = (
    ("up", 128, 64),
    *(("nb", 64, 0.0, 1, 5),) * 2,
    ("up", 64, 16),
    *(("nb", 16, 0.0, 1, 3),) * 2,
)
BLOCKS = {**ROW_BLOCKS, "nb": NonBottleneck1D, "dwsdil": DWSDil}


class WSPDNet(ERFNet):
    """WSPD-Net: ERFNet's network class with WSPD-Net's rows. Stages: ``encoder``,
    ``decoder``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__(num_classes, in_channels, ENCODER, DECODER, BLOCKS)


@register_model(tags=("thesis",))
def wspdnet(num_classes: int, in_channels: int = 3) -> WSPDNet:
    """WSPD-Net (thesis, no code; a documented reading): 716,288 parameters at K = 20."""
    return WSPDNet(num_classes, in_channels)
