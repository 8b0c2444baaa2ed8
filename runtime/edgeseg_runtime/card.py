"""What a segmenter needs to know about its network: classes, colours, normalisation, layout.

It comes from an edgeseg ONNX file's own metadata (``metadata_props`` under ``edgeseg.``),
from a bundle's ``model.json``, or, for an ONNX file from elsewhere, from the caller
(``--classes``, ``--mean``, ``--std``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg_runtime.errors import EdgesegError

__all__ = ["META_KEY", "ModelCard", "default_palette"]

#: Key prefix of edgeseg's entries in an ONNX model's ``metadata_props``.
META_KEY = "edgeseg"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (the PASCAL VOC bit-interleaving scheme), for a network
    whose file names no palette."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


@dataclass(frozen=True)
class ModelCard:
    """How to feed a network and read its output.

    Attributes:
        classes: class names, index = id.
        palette: an RGB colour per class.
        mean, std: per-channel normalisation of [0, 1] RGB input.
        layout: ``NCHW`` (edgeseg's) or ``NHWC``.
        input_size: ``(H, W)`` the network must run at; ``None``: any size.
        name: the network's name, for messages.
        extra: everything else the file or bundle says (measured latency, mIoU, ...).
    """

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    input_size: tuple[int, int] | None = None
    name: str = "network"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> ModelCard:
        """A card from decoded metadata or ``model.json`` (``where`` names the source).

        Raises:
            EdgesegError: a required field is missing or malformed (named).
        """
        missing = [k for k in ("classes", "mean", "std") if k not in data]
        if missing:
            raise EdgesegError(f"{where}: no {', '.join(missing)} in its edgeseg metadata")
        try:
            if not isinstance(data["classes"], list | tuple):
                raise EdgesegError(f"{where}: classes must be a list of names")
            classes = tuple(str(c) for c in data["classes"])
            palette = data.get("palette") or default_palette(len(classes))
            pal = tuple((int(c[0]), int(c[1]), int(c[2])) for c in palette)
            mean = tuple(float(v) for v in data["mean"])
            std = tuple(float(v) for v in data["std"])
            size = data.get("input_size")
            size = (int(size[0]), int(size[1])) if size else None
        except (TypeError, ValueError, IndexError, KeyError):
            raise EdgesegError(f"{where}: malformed edgeseg metadata") from None
        layout = str(data.get("layout", "NCHW"))
        if not classes or len(mean) != 3 or len(std) != 3:
            raise EdgesegError(f"{where}: classes, mean or std malformed in its metadata")
        if not all(math.isfinite(v) for v in mean) or not all(
            math.isfinite(v) and v > 0 for v in std
        ):
            raise EdgesegError(f"{where}: mean must be finite and std finite and positive")
        if len(classes) > 256:
            raise EdgesegError(f"{where}: {len(classes)} classes; uint8 labels hold 256")
        if len(pal) < len(classes) or any(not 0 <= v <= 255 for c in pal for v in c):
            raise EdgesegError(f"{where}: palette needs an RGB colour in 0..255 per class")
        if layout not in ("NCHW", "NHWC"):
            raise EdgesegError(f"{where}: layout {layout!r} is not NCHW or NHWC")
        model = data.get("model")
        # A bundle card names the model at the top; ONNX metadata under "model".
        name = data.get("name") if isinstance(data.get("name"), str) else None
        if not name:
            name = model.get("name", "") if isinstance(model, dict) else str(model or "")
        known = {"classes", "palette", "mean", "std", "layout", "input_size"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(classes, pal, mean, std, layout, size, name or "network", extra)  # type: ignore[arg-type]

    @classmethod
    def from_onnx_metadata(cls, props: Mapping[str, str], where: str) -> ModelCard | None:
        """A card from an ONNX file's ``metadata_props`` (or a LiteRT file's named
        metadata); ``None`` when edgeseg wrote none."""
        meta: dict[str, Any] = {}
        for key, value in props.items():
            if key.startswith(META_KEY + "."):
                try:
                    meta[key[len(META_KEY) + 1 :]] = json.loads(value)
                except json.JSONDecodeError:
                    meta[key[len(META_KEY) + 1 :]] = value
        if meta.get("format") not in ("edgeseg.onnx", "edgeseg.litert"):
            return None
        return cls.from_mapping(meta, where)

    @classmethod
    def from_flags(
        cls,
        classes: Sequence[str],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        layout: str = "NCHW",
    ) -> ModelCard:
        """A card given by the caller (an ONNX file without edgeseg metadata)."""
        data = {
            "classes": list(classes),
            "mean": list(mean or IMAGENET_MEAN),
            "std": list(std or IMAGENET_STD),
            "layout": layout,
        }
        if palette:
            data["palette"] = [list(c) for c in palette]
        return cls.from_mapping(data, "--classes/--mean/--std")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``model.json``'s fields)."""
        return {
            **self.extra,
            "name": self.name,
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": self.layout,
            "input_size": list(self.input_size) if self.input_size else None,
        }


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a one-line error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgesegError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        # RecursionError: arrays nested thousands deep (json has no depth limit)
        raise EdgesegError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise EdgesegError(f"{path}: expected a JSON object")
    return data
