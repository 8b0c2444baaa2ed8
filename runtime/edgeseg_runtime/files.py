"""The files a prediction reads and writes: input images, label PNGs, overlays."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.processing import (
    IMAGE_SUFFIXES,
    colorize,
    label_png,
    overlay,
    rgb_png,
    with_legend,
)

__all__ = ["atomic_write_bytes", "collect_images", "write_prediction"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader never
    sees half a file, and an interrupted write leaves the old one (or none)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make every output private
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect_images(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Every image named or inside a named folder, each once, checked before any work.

    Raises:
        EdgesegError: a missing path, a folder with no images, or two inputs of one stem
            (their outputs would be one file).
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: list[Path] = []
    for item in items:
        src = Path(item)
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EdgesegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src}")
            files += found
        elif src.is_file():
            files.append(src)
        else:
            raise EdgesegError(f"image or folder not found: {src}")
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem and by_stem[f.stem] != f:
            raise EdgesegError(
                f"{by_stem[f.stem]} and {f} would both write {f.stem}.png: rename one, or "
                "predict them into different --out folders"
            )
        by_stem[f.stem] = f
    return list(dict.fromkeys(files))


def write_prediction(
    out: str | Path,
    stem: str,
    rgb: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    alpha: float = 0.5,
    legend: bool = False,
) -> dict[str, str]:
    """Write ``OUT/labels/STEM.png`` (class ids, palette attached) and
    ``OUT/overlays/STEM.png`` (the colours blended over the image; with ``legend``, the
    class key below it). Returns their paths."""
    o = Path(out)
    lbl, ov = o / "labels" / f"{stem}.png", o / "overlays" / f"{stem}.png"
    atomic_write_bytes(lbl, label_png(labels, palette))
    shown = overlay(rgb, colorize(labels, palette), alpha)
    if legend:
        shown = with_legend(shown, classes, palette)
    atomic_write_bytes(ov, rgb_png(shown))
    return {"labels": str(lbl), "overlay": str(ov)}
