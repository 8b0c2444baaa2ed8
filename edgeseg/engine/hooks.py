"""Plug-in points of the training loop and of checkpoint loading.

The engine knows nothing of what plugs in: a package above it (``edgeseg.compress``)
registers a *hook factory* (called with the recipe, returns a :class:`TrainHook` or
``None``) and *checkpoint adapters* (rebuild a saved structure such as pruned widths or
compression masks). :func:`load_plugins` imports, on first need, the modules the
``edgeseg.plugins`` entry points name (edgeseg's own are declared in its
``pyproject.toml``), so the engine names none of them and every static import points down
the layers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from edgeseg.config import Config

# A hook receives the running ``edgeseg.engine.train.Trainer`` (typed ``Any`` here: the
# trainer imports this module, not the other way round).
Trainer = Any

log = logging.getLogger(__name__)

__all__ = [
    "PLUGIN_GROUP",
    "TrainHook",
    "checkpoint_adapter",
    "hooks_for",
    "load_plugins",
    "plugin_modules",
    "register_checkpoint_adapter",
    "register_hook",
]

#: Entry-point group of the modules that register hooks or adapters when imported
#: (edgeseg's own, ``edgeseg.engine.extras`` and ``edgeseg.compress``, are declared in its
#: ``pyproject.toml``; a third-party package adds its own the same way).
PLUGIN_GROUP = "edgeseg.plugins"

_HOOK_FACTORIES: dict[str, Callable[[Config], TrainHook | None]] = {}
_ADAPTERS: dict[str, Callable[[nn.Module, dict[str, Any]], nn.Module]] = {}


class TrainHook:
    """What a plug-in may do inside :class:`~edgeseg.engine.train.Trainer`; every method
    is optional (the defaults change nothing)."""

    def attach(self, trainer: Trainer) -> None:
        """Called once the model, optimizer and schedule exist, before any weights load."""

    def after_step(self, trainer: Trainer) -> None:
        """Called after every optimizer step (``trainer.global_step`` counts them)."""

    def log_state(self) -> dict[str, float]:
        """Extra values for this epoch's row of ``log.jsonl``."""
        return {}

    def best_allowed(self, trainer: Trainer) -> bool:
        """Whether the model may become ``best.pt`` now."""
        return True

    def deployable(self, model: nn.Module) -> nn.Module:
        """The model ``best.pt`` stores (e.g. masks stripped, or the weights' average)."""
        return model

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The model validation scores (e.g. the weights' average)."""
        return model

    def extra_loss(
        self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """A term added to the batch's loss (e.g. distillation), or ``None``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What ``last.pt`` must hold to resume this hook exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (on a resume, after :meth:`attach`)."""


def plugin_modules() -> list[str]:
    """The modules of the :data:`PLUGIN_GROUP` entry points, sorted by name."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name)
    if not found:  # a source tree on sys.path: its pyproject.toml was never installed
        log.warning("no %s entry points: install edgeseg (pip install -e .)", PLUGIN_GROUP)
    return [ep.value for ep in found]


def load_plugins() -> None:
    """Import every plug-in module (idempotent)."""
    for name in plugin_modules():
        importlib.import_module(name)


def register_hook(name: str, factory: Callable[[Config], TrainHook | None]) -> None:
    """Register a training hook factory under ``name`` (a later one replaces it)."""
    _HOOK_FACTORIES[name] = factory


def hooks_for(config: Config) -> list[TrainHook]:
    """The hooks the recipe asks for, from every registered factory."""
    load_plugins()
    hooks = (factory(config) for factory in _HOOK_FACTORIES.values())
    return [h for h in hooks if h is not None]


def register_checkpoint_adapter(
    name: str, adapter: Callable[[nn.Module, dict[str, Any]], nn.Module]
) -> None:
    """Register ``adapter(model, checkpoint) -> model`` for checkpoints marked ``name``."""
    _ADAPTERS[name] = adapter


def checkpoint_adapter(name: str) -> Callable[[nn.Module, dict[str, Any]], nn.Module] | None:
    """The adapter registered as ``name``, or ``None``."""
    if name not in _ADAPTERS:
        load_plugins()
    return _ADAPTERS.get(name)
