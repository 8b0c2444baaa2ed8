"""Segmenters composed of a pretrained-capable encoder and a decoder, registered by name.

Every decoder of :data:`~edgeseg.models.decoders.DECODERS` is registered with every encoder
of :func:`~edgeseg.models.encoders.list_encoders` as ``{decoder}_{encoder}``, e.g.
``lraspp_efficientnet_lite0`` or ``ppliteseg_efficientnet_lite2``. They follow the model
contract (pad to stride 32, logits at the input's size) and build with random weights;
a recipe's ``model.encoder_weights: imagenet`` (or :func:`load_pretrained_encoder`) loads
the encoder's ImageNet weights from its pip package. The model's :attr:`input_mean` and
:attr:`input_std` are the normalisation the encoder was trained with: training uses them,
so the checkpoint, ONNX metadata and bundles carry them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model
from edgeseg.models.decoders import DECODERS
from edgeseg.models.encoders import create_encoder, list_encoders
from edgeseg.models.encoders.weights import load_encoder_weights

__all__ = ["EncoderDecoder", "TappedEncoderDecoder", "load_pretrained_encoder"]


class EncoderDecoder(SegmentationModel):
    """An encoder (four maps at strides 4-32) and a decoder (logits at its stride).

    Stages: ``encoder``, ``decoder``. Output stride 32.

    Args:
        encoder: an :class:`~edgeseg.models.encoders.Encoder`.
        decoder: a decoder built for ``encoder.out_channels``.
    """

    output_stride = 32

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def input_mean(self) -> tuple[float, float, float]:
        """Per-channel input mean the encoder's weights expect (images in [0, 1])."""
        return tuple(self.encoder.mean)  # type: ignore[return-value, arg-type]

    @property
    def input_std(self) -> tuple[float, float, float]:
        """Per-channel input standard deviation the encoder's weights expect."""
        return tuple(self.encoder.std)  # type: ignore[return-value, arg-type]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # 4 maps, (B, C_i, H/s, W/s) for s = 4, 8, 16, 32
        y = self.decoder(feats)  # (B, K, H/stride, W/stride)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class TappedEncoderDecoder(EncoderDecoder):
    """An :class:`EncoderDecoder` whose decoder has training-only auxiliary heads
    (``decoder.forward_taps``, ``decoder.aux_heads``); ``forward`` stays the plain network.
    """

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits at the (padded) input's size and the decoder's tapped features."""
        y, taps = self.decoder.forward_taps(self.encoder(x))  # type: ignore[operator]
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False), taps

    def aux_heads(self) -> nn.ModuleDict:
        """New auxiliary heads from the decoder, keyed by the tap each reads."""
        return self.decoder.aux_heads()  # type: ignore[operator, no-any-return]


def load_pretrained_encoder(model: nn.Module, weights: str) -> dict[str, Any]:
    """Load ``weights`` (``"imagenet"`` or a state-dict file) into ``model``'s encoder and
    record the provenance in ``model.edgeseg_config["encoder_weights"]`` (checkpoints and
    model cards keep it).

    Raises:
        EdgesegError: the model has no pretrainable encoder, the weights package is not
            installed, or the tensors do not fit.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(model, EncoderDecoder) or encoder is None:
        name = getattr(model, "edgeseg_config", {}).get("name", type(model).__name__)
        raise EdgesegError(
            f"model.encoder_weights: model '{name}' has no pretrained encoder "
            f"(models named *_{'|'.join(list_encoders())} have)"
        )
    record = load_encoder_weights(encoder, weights)
    if hasattr(model, "edgeseg_config"):
        model.edgeseg_config["encoder_weights"] = record  # type: ignore[operator, index, assignment]
    return record


def _register(decoder: str, encoder: str) -> None:
    cls, summary = DECODERS[decoder]

    def builder(
        num_classes: int, in_channels: int = 3, drop_path_rate: float | None = None
    ) -> EncoderDecoder:
        enc = create_encoder(encoder, in_channels=in_channels, drop_path_rate=drop_path_rate)
        dec = cls(enc.out_channels, num_classes)
        net = TappedEncoderDecoder if hasattr(dec, "aux_heads") else EncoderDecoder
        return net(enc, dec)

    builder.__name__ = builder.__qualname__ = f"{decoder}_{encoder}"
    builder.__doc__ = (
        f"{summary}, on {encoder} (ImageNet weights with encoder_weights=imagenet).\n\n"
        "Args:\n    drop_path_rate: the encoder's stochastic depth (None: the reference's)."
    )
    register_model(builder, tags=("pretrained-encoder",))


for _dec in DECODERS:
    for _enc in list_encoders():
        _register(_dec, _enc)
