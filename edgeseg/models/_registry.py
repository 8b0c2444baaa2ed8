"""Model registry in the style of timm / torchvision.

Each variant has one builder function decorated with :func:`register_model`; users build
models by name with :func:`create_model` and discover them with :func:`list_models`.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.utils import positive_int

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "register_resolver",
]

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one registered variant."""

    name: str  # registry name, e.g. "squeeze_unet"
    builder: Callable[..., nn.Module]  # the decorated function
    family: str  # module the builder lives in, e.g. "squeeze_unet"
    summary: str  # first line of the builder's docstring
    tags: tuple[str, ...] = field(default_factory=tuple)  # free-form labels, e.g. ("paper",)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(fn: F | None = None, *, name: str | None = None, tags: tuple[str, ...] = ()):
    """Register a model builder under ``name`` (default: the function's name).

    The builder must accept ``num_classes`` and ``in_channels`` keyword arguments and
    return an ``nn.Module`` that follows the edgeseg model contract (NCHW float in,
    logits ``(B, K, H, W)`` at the input's size out).

    Raises:
        ValueError: if the name is already registered.
    """

    def decorator(f: F) -> F:
        key = name or f.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered by {_REGISTRY[key].builder}")
        doc = inspect.getdoc(f) or ""
        family = f.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelInfo(key, f, family, doc.splitlines()[0] if doc else "", tuple(tags))
        return f

    return decorator(fn) if fn is not None else decorator


# "prefix:NAME" names resolved on first use (torchvision:lraspp_mobilenet_v3_large).
_RESOLVERS: dict[str, Callable[[str], ModelInfo]] = {}


def register_resolver(prefix: str, resolve: Callable[[str], ModelInfo]) -> None:
    """Resolve names ``PREFIX:NAME`` with ``resolve(NAME)`` (for models defined elsewhere).

    Raises:
        ValueError: if the prefix is already taken.
    """
    if prefix in _RESOLVERS:
        raise ValueError(f"model prefix {prefix!r} is already registered")
    _RESOLVERS[prefix] = resolve


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern``."""
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model.

    Raises:
        UnknownModelError: naming the closest registered names.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _RESOLVERS and rest:
        return _RESOLVERS[prefix](rest)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (see `edgeseg models` for the full list)"
    )


#: Up to these, a zoo network with its default options is known to be small (its
#: parameters are not counted before it is built).
_PLAIN_CLASSES, _PLAIN_CHANNELS = 1024, 16


def create_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of output classes K (logit channels).
        in_channels: number of input channels (3 for RGB).
        **kwargs: architecture options of that model (see its builder's docstring).

    Returns:
        The model. ``model.edgeseg_config`` holds ``{"name", "num_classes", "in_channels",
        "kwargs"}`` so that checkpoints can rebuild it.

    Raises:
        UnknownModelError: if the name is not registered.
        EdgesegError: if ``num_classes``/``in_channels`` are not positive or a keyword is
            not accepted by the builder.
    """
    info = model_info(name)
    num_classes = positive_int(num_classes, "num_classes")
    in_channels = positive_int(in_channels, "in_channels")
    params = inspect.signature(info.builder).parameters
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not accepts_var_kw]
    if unknown:
        allowed = [p for p in params if p not in ("num_classes", "in_channels")]
        raise EdgesegError(
            f"model {name!r} does not take {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(allowed) or 'no options'}"
        )
    if kwargs or num_classes > _PLAIN_CLASSES or in_channels > _PLAIN_CHANNELS:
        # options that can make any network huge: count its parameters before allocating
        from edgeseg.models.footprint import check_params

        check_params(
            lambda: info.builder(num_classes=num_classes, in_channels=in_channels, **kwargs),
            f"model {name!r} ({num_classes} classes, {in_channels} input channels"
            + (f", {kwargs})" if kwargs else ")"),
        )
    model = info.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.edgeseg_config = {  # type: ignore[assignment]  # a plain attribute, not a tensor
        "name": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "kwargs": dict(kwargs),
    }
    return model
