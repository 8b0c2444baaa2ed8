"""Decoders that turn an encoder's four feature maps (strides 4, 8, 16, 32) into logits.

The decoder contract: ``Decoder(in_channels, num_classes)`` with ``in_channels`` the
encoder's four widths; ``forward(feats)`` returns logits ``(B, K, H / stride, W / stride)``
at the decoder's :attr:`stride`; :class:`~edgeseg.models.encoder_decoder.EncoderDecoder`
upsamples them to the input's size. Registered by name so every decoder composes with
every encoder (``lraspp_efficientnet_lite0``, ``ppliteseg_efficientnet_lite2`` ...).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgeseg.models.decoders.fpn import FPNDecoder
from edgeseg.models.decoders.lraspp import LRASPPDecoder
from edgeseg.models.decoders.ppliteseg import PPLiteSegDecoder

__all__ = ["DECODERS", "FPNDecoder", "LRASPPDecoder", "PPLiteSegDecoder"]

#: name -> (decoder class, one-line description for the registry).
DECODERS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "lraspp": (LRASPPDecoder, "LR-ASPP head (MobileNetV3, sec. 6.3) on strides 8 and 32"),
    "ppliteseg": (PPLiteSegDecoder, "PP-LiteSeg decoder: SPPM, UAFM fusion, FLD (strides 8-32)"),
    "fpn": (FPNDecoder, "semantic FPN (Kirillov et al., 2019): all four strides to 1/4"),
}
