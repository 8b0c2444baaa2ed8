"""edgeseg: efficient semantic segmentation networks for CPUs and edge devices."""

from __future__ import annotations

from typing import Any

from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.models import SegmentationModel, create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "EdgesegError",
    "SegmentationModel",
    "Segmenter",
    "UnknownModelError",
    "__version__",
    "create_model",
    "evaluate",
    "list_models",
    "load_config",
    "register_model",
    "train",
]

# Heavier entry points (they pull in the data stack) load on first use.
_LAZY = {
    "train": ("edgeseg.engine.train", "train"),
    "evaluate": ("edgeseg.engine.evaluate", "evaluate"),
    "Segmenter": ("edgeseg.deploy.segmenter", "Segmenter"),
    "load_config": ("edgeseg.config", "load_config"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
