"""The ESSNet family of the thesis (seed 002): ESSNetA, ESSNetB, ESSNet, their decoders.

ERFNet's encoder with its non-bottleneck-1D blocks replaced by *Conv-modules*
(:class:`~edgeseg.layers.ConvModule`): layer ``D`` (depthwise-separable, dilated), ``DG<g>``
(pointwise convs with ``g`` groups) and, with ``shuffle=True``, ``DG<g>S`` (channel shuffle
after the first pointwise conv). Rows follow ``../shared/spec/ARCHITECTURES.md`` section 4:

    ESSNetB  encoder: DS(3,16), DS(16,64), 5 x CM(64), DS(64,128),
             2 x [CM(128, d) for d in 2, 4, 8, 16]; ERFNet decoder
    ESSNetA  encoder: DS16, DS64, 3 x nb(64), 2 x CM(64), DS128,
             4 x nb(128, d = 2, 4, 8, 16), 4 x CM(128, d = 2, 4, 8, 16); ERFNet decoder
    ESSNet   ESSNetB's encoder, light decoder: UPS(128,64), 2 x CM(64), UPS(64,16),
             2 x CM(16), 2x2 stride-2 transposed conv -> K

Grouping applies to the encoder's Conv-modules only (the decoder's stay dense, layer D),
which is what the thesis' parameter deltas show. Dropout as ERFNet: 0.03 at 64 channels,
0.3 at 128, none in the decoder. Every conv has a bias, BN eps 1e-3.

Counts at K = 20: ESSNetB D/DG2/DG4/DG8 = 578,304 / 426,752 / 350,976 / 313,088, exactly
the reference code. ESSNet D/DG2/DG4 = 421,056 / 269,504 / 193,728: the reference's
423,636 / 272,084 / 196,308 also count its unused encoder-only classifier (128K + K =
2,580). ESSNetA DG2/DG4/DG8 = 1,267,328 / 1,230,464 / 1,212,032, exactly the reference.
The grouping deltas, which the thesis reports, match exactly (tests).

Decoder variants of ``essnet`` (thesis Table 4.1; layer choices the text leaves open are
readings, marked *):
    ``cm``       the ESSNet decoder above (default).
    ``ups``      "enc-UPS": ERFNet's decoder with UPS in place of its 3x3 upsamplers.
    ``trans4x``  4x4 stride-4 transposed conv 128 -> 16 (+BN, ReLU)*, 2 x CM(16), 2x2
                 stride-2 transposed conv -> K.
    ``trans8x``  one 8x8 stride-8 transposed conv 128 -> K*.
    ``nodec``    1x1 conv 128 -> K, bilinear x8.
``ppm=True`` adds the pyramid pooling module (section 4.2) on the encoder output
(128 -> 256 channels) before the decoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers import UPS, ConvModule, PyramidPooling, parse_layer
from edgeseg.layers.erfnet_blocks import BN_EPS
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model
from edgeseg.models.erfnet import DECODER as ERFNET_DECODER
from edgeseg.models.erfnet import ROW_BLOCKS, build_rows

_DILATIONS = (2, 4, 8, 16)

#: Encoders as rows: ("ds", in, out), ("nb", C, dropout, d), ("cm", C, dropout, d).
ENCODERS: dict[str, tuple[tuple, ...]] = {
    "b": (
        ("ds", 3, 16),
        ("ds", 16, 64),
        *(("cm", 64, 0.03, 1),) * 5,
        ("ds", 64, 128),
        *(("cm", 128, 0.3, d) for d in _DILATIONS),
        *(("cm", 128, 0.3, d) for d in _DILATIONS),
    ),
    "a": (
        ("ds", 3, 16),
        ("ds", 16, 64),
        *(("nb", 64, 0.03, 1),) * 3,
        *(("cm", 64, 0.03, 1),) * 2,
        ("ds", 64, 128),
        *(("nb", 128, 0.3, d) for d in _DILATIONS),
        *(("cm", 128, 0.3, d) for d in _DILATIONS),
    ),
}

#: Decoders as rows (``dense`` = a layer-D Conv-module) and the head that ends each.
DECODERS: dict[str, tuple[tuple[tuple, ...], str]] = {
    "erfnet": (ERFNET_DECODER, "t2"),
    "cm": (
        (("ups", 128, 64), *(("dense", 64),) * 2, ("ups", 64, 16), *(("dense", 16),) * 2),
        "t2",
    ),
    "ups": (
        (("ups", 128, 64), *(("nb", 64, 0.0, 1),) * 2, ("ups", 64, 16), *(("nb", 16, 0.0, 1),) * 2),
        "t2",
    ),
    "trans4x": ((("t4", 128, 16), *(("dense", 16),) * 2), "t2"),
    "trans8x": ((), "t8"),
    "nodec": ((), "bilinear8"),
}


def _t4(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=4, bias=True),
        nn.BatchNorm2d(cout, eps=BN_EPS),
        nn.ReLU(inplace=True),
    )


class _Bilinear8(nn.Module):
    """1x1 conv to K then bilinear x8 (the thesis' "no decoder")."""

    def __init__(self, cin: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, k, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=8.0, mode="bilinear", align_corners=False)


HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "t2": lambda cin, k: nn.ConvTranspose2d(cin, k, 2, stride=2, bias=True),
    "t8": lambda cin, k: nn.ConvTranspose2d(cin, k, 8, stride=8, bias=True),
    "bilinear8": _Bilinear8,
}


class ESSNet(SegmentationModel):
    """An ESSNet-family network. Stages: ``encoder``, [``ppm``], ``decoder``, ``head``.

    Args:
        num_classes: K.
        in_channels: input channels.
        encoder: ``"a"`` (ESSNetA) or ``"b"`` (ESSNetB / ESSNet).
        decoder: a key of :data:`DECODERS`.
        layer: Conv-module of the encoder: ``"D"``, ``"DG2"``, ``"DG4"``, ``"DG8"``.
        shuffle: channel shuffle in grouped Conv-modules (DGCS).
        ppm: pyramid pooling on the encoder output.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        encoder: str = "b",
        decoder: str = "cm",
        layer: str = "D",
        shuffle: bool = False,
        ppm: bool = False,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {sorted(DECODERS)}, got {decoder!r}")
        groups = parse_layer(layer)
        self.output_stride = 8
        blocks: dict[str, Callable[..., nn.Module]] = {
            **ROW_BLOCKS,
            "cm": lambda c, p, d: ConvModule(c, d, p, groups=groups, shuffle=shuffle),
            "dense": lambda c: ConvModule(c),
            "ups": UPS,
            "t4": _t4,
        }
        rows = ENCODERS[encoder]
        rows = ((rows[0][0], in_channels, rows[0][2]), *rows[1:])
        self.encoder = build_rows(rows, blocks)
        width = 128
        if ppm:
            self.ppm = PyramidPooling(width)
            width = self.ppm.out_channels
        dec_rows, head = DECODERS[decoder]
        if dec_rows:  # the first decoder block takes the encoder's (or the PPM's) width
            first = (dec_rows[0][0], width, *dec_rows[0][2:])
            dec_rows = (first, *dec_rows[1:])
            width = 16
        self.decoder = build_rows(dec_rows, blocks)
        self.head = HEADS[head](width, num_classes)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x)  # (B, 128, H/8, W/8)
        if hasattr(self, "ppm"):
            y = self.ppm(y)  # (B, 256, H/8, W/8)
        y = self.decoder(y)  # (B, 16, H/2, W/2) (or unchanged without decoder rows)
        return self.head(y)  # (B, K, H, W)


@register_model(tags=("paper",))
def essnet(
    num_classes: int,
    in_channels: int = 3,
    layer: str = "D",
    shuffle: bool = False,
    decoder: str = "cm",
    ppm: bool = False,
) -> ESSNet:
    """ESSNet: ESSNetB's encoder, light UPS + Conv-module decoder (421,056 P at K=20, D)."""
    return ESSNet(num_classes, in_channels, "b", decoder, layer, shuffle, ppm)


@register_model(tags=("paper",))
def essnet_b(
    num_classes: int, in_channels: int = 3, layer: str = "D", shuffle: bool = False
) -> ESSNet:
    """ESSNetB: Conv-module encoder, ERFNet decoder (578,304 P at K=20, layer D)."""
    return ESSNet(num_classes, in_channels, "b", "erfnet", layer, shuffle)


@register_model(tags=("paper",))
def essnet_a(
    num_classes: int, in_channels: int = 3, layer: str = "DG2", shuffle: bool = False
) -> ESSNet:
    """ESSNetA: mixed non-bt-1D / Conv-module encoder, ERFNet decoder (DG2 by default)."""
    return ESSNet(num_classes, in_channels, "a", "erfnet", layer, shuffle)


@register_model(tags=("paper",))
def essnet_ppm(
    num_classes: int, in_channels: int = 3, layer: str = "D", shuffle: bool = False
) -> ESSNet:
    """ESSNet with the pyramid pooling module on its encoder (thesis section 4.2)."""
    return ESSNet(num_classes, in_channels, "b", "cm", layer, shuffle, ppm=True)
