"""Encoders with ImageNet weights: one contract, a registry, offline weights.

An encoder maps an image ``(B, 3, H, W)`` to four feature maps at strides 4, 8, 16 and 32
(the shape timm's ``features_only`` and segmentation_models_pytorch's encoders return),
with :attr:`Encoder.out_channels` giving their channels. It also names the input
normalisation its weights were trained with (:attr:`Encoder.mean`, :attr:`Encoder.std`):
a segmenter built on it feeds images normalised that way, and the checkpoint, the ONNX
metadata and the bundle carry it.

Weights come from pip-installed packages only (the ``edgeseg[imagenet]`` extra), never
from a hub at run time: see :mod:`edgeseg.models.encoders.weights`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ENCODER_STRIDES",
    "Encoder",
    "create_encoder",
    "list_encoders",
    "register_encoder",
]

#: The strides of the four feature maps every encoder returns.
ENCODER_STRIDES = (4, 8, 16, 32)


class Encoder(nn.Module):
    """The encoder contract: ``forward(x (B, C, H, W))`` returns four maps
    ``(B, out_channels[i], H / s, W / s)`` for ``s`` in :data:`ENCODER_STRIDES` (H and W
    multiples of 32).

    Attributes:
        out_channels: channels of the four maps.
        mean: per-channel input mean the weights expect (images scaled to [0, 1]).
        std: per-channel input standard deviation the weights expect.
        weights_key: the name :func:`edgeseg.models.encoders.weights.load_encoder_weights`
            finds this encoder's pretrained weights under.
    """

    out_channels: tuple[int, int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_key: str

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """The four feature maps, shallow to deep."""
        raise NotImplementedError

    def imagenet_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This encoder's state dict keys for a pretrained package's state dict (the key
        map); classifier tensors the encoder does not have are dropped."""
        raise NotImplementedError  # pragma: no cover - abstract


_ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register_encoder(fn: Callable[..., Encoder]) -> Callable[..., Encoder]:
    """Register an encoder builder under its function name (a duplicate raises)."""
    if fn.__name__ in _ENCODERS:
        raise ValueError(f"encoder {fn.__name__!r} is already registered")
    _ENCODERS[fn.__name__] = fn
    return fn


def list_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_ENCODERS)


def create_encoder(name: str, in_channels: int = 3, **kwargs) -> Encoder:
    """Build a registered encoder (random weights; see ``load_encoder_weights``)."""
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    return _ENCODERS[name](in_channels=in_channels, **kwargs)


# Registers the families (after the registry exists: they import it).
from edgeseg.models.encoders import efficientnet_lite  # noqa: E402, F401
