"""Networks from outside the zoo, on the same terms as the zoo's.

Two ways in:

* any ``nn.Module`` through :class:`ContractAdapter` (or :func:`register_external`, which
  registers a builder so that training, checkpoints and ``edgeseg compare`` rebuild it by
  name like a zoo model);
* torchvision's segmentation models by name, ``torchvision:lraspp_mobilenet_v3_large``,
  when torchvision is installed. They are built with ``weights=None`` and
  ``weights_backbone=None`` (trained from scratch like ours, and nothing is downloaded).

The adapter makes the output follow the model contract: torchvision returns
``{"out": logits, "aux": ...}``; the adapter returns ``logits`` alone, resized to the
input's size if the network did not do it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.models._registry import ModelInfo, register_model, register_resolver

__all__ = ["ContractAdapter", "register_external", "torchvision_builder"]


class ContractAdapter(nn.Module):
    """Wrap a segmentation network so that it returns logits ``(B, K, H, W)``.

    Args:
        net: the wrapped network; its output may be a tensor, a mapping with ``key``
            (torchvision's ``"out"``), or a sequence whose first item is the logits.
        key: the mapping key of the logits.
    """

    def __init__(self, net: nn.Module, key: str = "out") -> None:
        super().__init__()
        self.net = net
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input's height and width."""
        y: Any = self.net(x)
        if isinstance(y, Mapping):
            y = y[self.key]
        elif isinstance(y, Sequence) and not isinstance(y, torch.Tensor):
            y = y[0]
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y


def register_external(
    name: str, factory: Callable[..., nn.Module], *, key: str = "out"
) -> Callable[..., nn.Module]:
    """Register a builder for a network that is not in the zoo.

    Args:
        name: registry name (must not be taken).
        factory: ``factory(num_classes=K)`` (``in_channels`` too if it accepts it) returning
            the network.
        key: mapping key of the logits when the network returns a dict.

    Returns:
        The registered builder (``create_model(name, num_classes=K)`` calls it).

    Raises:
        ValueError: the name is already registered.
    """
    accepts = inspect.signature(factory).parameters

    def builder(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        if "in_channels" in accepts:
            kwargs["in_channels"] = in_channels
        elif in_channels != 3:
            raise EdgesegError(f"model {name!r} only takes 3 input channels")
        return ContractAdapter(factory(num_classes=num_classes, **kwargs), key=key)

    builder.__doc__ = inspect.getdoc(factory) or f"external model {name}"
    builder.__module__ = "external"
    register_model(builder, name=name, tags=("external",))
    return builder


def torchvision_builder(name: str) -> ModelInfo:
    """The registry entry of ``torchvision:NAME`` (resolved on first use).

    Raises:
        EdgesegError: torchvision is not installed or fails to import.
        UnknownModelError: torchvision has no segmentation model ``NAME``.
    """
    try:
        seg = importlib.import_module("torchvision.models.segmentation")
    except Exception as e:  # not installed, or a build that does not match torch
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgesegError(
            f"model 'torchvision:{name}' needs torchvision (the build matching your torch): {first}"
        ) from None
    fn = getattr(seg, name, None)
    if not callable(fn) or name.startswith("_") or not name[0].islower():
        names = getattr(seg, "__all__", dir(seg))
        known = sorted(n for n in names if n[:1].islower() and callable(getattr(seg, n, None)))
        raise UnknownModelError(
            f"torchvision has no segmentation model {name!r} (it has: {', '.join(known)})"
        )

    def builder(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        if in_channels != 3:
            raise EdgesegError(f"torchvision:{name} only takes 3 input channels")
        # From scratch, nothing downloaded: no pretrained weights of either part.
        kwargs.setdefault("weights", None)
        kwargs.setdefault("weights_backbone", None)
        return ContractAdapter(fn(num_classes=num_classes, **kwargs))

    doc = (inspect.getdoc(fn) or "").splitlines()
    return ModelInfo(
        f"torchvision:{name}", builder, "torchvision", doc[0] if doc else name, ("external",)
    )


register_resolver("torchvision", torchvision_builder)
