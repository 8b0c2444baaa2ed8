"""A deployment bundle: one folder with the network, its card and how to run it.

    BUNDLE/model.onnx    the chosen artefact (fp32 or int8 ONNX)
    BUNDLE/model.json    classes, palette, normalisation, input size, measured latency, mIoU
    BUNDLE/README.md     how to run it with edgeseg-runtime

``edgeseg export CKPT --bundle DIR`` writes one; :class:`edgeseg_runtime.Segmenter` and
``edgeseg-run`` take the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeseg_runtime.card import ModelCard, read_json
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.files import atomic_write_bytes

__all__ = ["BUNDLE_FORMAT", "read_bundle", "write_bundle"]

BUNDLE_FORMAT = "edgeseg.bundle/1"


def read_bundle(folder: str | Path) -> tuple[Path, ModelCard]:
    """``(model file, card)`` of a bundle folder.

    Raises:
        EdgesegError: no or unreadable ``model.json``, another format, a missing model
            file, malformed fields (each named).
    """
    d = Path(folder)
    card_path = d / "model.json"
    if not card_path.is_file():
        raise EdgesegError(f"{d} is not an edgeseg bundle (no model.json)")
    data = read_json(card_path)
    if data.get("format") != BUNDLE_FORMAT:
        raise EdgesegError(f"{card_path}: format is {data.get('format')!r}, not {BUNDLE_FORMAT}")
    name = data.get("model_file")
    if not isinstance(name, str) or Path(name).name != name:
        raise EdgesegError(f"{card_path}: model_file must name a file in the bundle")
    model = d / name
    if not model.is_file():
        raise EdgesegError(f"{card_path}: its model file {model} is missing")
    return model, ModelCard.from_mapping(data, str(card_path))


_README = """# {name}: an edgeseg deployment bundle

`{model_file}` (ONNX, {size_mb:.2f} MB, run in {precision} by {backend}) segments
{h}x{w} RGB images into {k} classes: {classes}.

Measured when it was exported: {measured}

Run it with PyTorch nowhere on the device:

```bash
# edgeseg's runtime/ folder (numpy, Pillow, ONNX Runtime), from its source checkout:
pip install EDGESEG_SOURCE/runtime
edgeseg-run predict . images/ --out predictions/ --legend{backend_flag}
```

```python
from edgeseg_runtime import Segmenter
seg = Segmenter("path/to/this/folder"{backend_arg})
labels = seg("image.png")                        # (H, W) uint8 class ids
```

`model.json` holds the classes, palette, normalisation and the measurements.
"""


def write_bundle(folder: str | Path, model_bytes: bytes, card: dict[str, Any]) -> Path:
    """Write a bundle: ``model.onnx`` from ``model_bytes``, ``model.json`` from ``card``
    (a :meth:`ModelCard.to_dict` plus measurements), and its README. Returns the folder.

    The card is checked (as :func:`read_bundle` will read it) before anything is written.
    """
    d = Path(folder)
    data = {"format": BUNDLE_FORMAT, "model_file": "model.onnx", **card}
    parsed = ModelCard.from_mapping(data, "bundle card")
    m = data.get("measured") or {}
    measured = "; ".join(f"{k} {v}" for k, v in m.items()) or "nothing"
    size = parsed.input_size or (0, 0)
    backend = str(data.get("backend", "ort"))  # the engine it was measured fastest on
    readme = _README.format(
        name=parsed.name,
        model_file="model.onnx",
        precision=data.get("precision", "fp32"),
        size_mb=len(model_bytes) / 2**20,
        h=size[0],
        w=size[1],
        k=len(parsed.classes),
        classes=", ".join(parsed.classes),
        measured=measured,
        backend=backend,
        backend_flag=f" --backend {backend}" if backend != "ort" else "",
        backend_arg=f', backend="{backend}"' if backend != "ort" else "",
    )
    atomic_write_bytes(d / "model.onnx", model_bytes)
    atomic_write_bytes(d / "model.json", (json.dumps(data, indent=2) + "\n").encode())
    atomic_write_bytes(d / "README.md", readme.encode())
    return d
