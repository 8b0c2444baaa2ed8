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

__all__ = [
    "OVERWRITE_HINT",
    "atomic_write_bytes",
    "check_alpha",
    "check_predictions_free",
    "check_replace",
    "collect_images",
    "publish",
    "write_prediction",
]

# The one flag that lets a command replace files it did not create, in both packages.
OVERWRITE_HINT = "add --overwrite to replace"


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename the finished temporary file ``tmp`` to ``path`` with the mode a plain
    ``open`` would have given it (``0666`` less the umask): ``tempfile.mkstemp``'s ``0600``
    would make every output private to its writer. The data are synced first, so a
    power cut cannot leave an empty file under the final name: the one way both packages
    put a finished file in place."""
    with open(tmp, "rb") as f:  # the data reach the disk before the name does
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader never
    sees half a file, and an interrupted write leaves the old one (or none).

    The data reach the disk before the rename (``fsync``), so a power cut cannot leave an
    empty file under the final name either: the one atomic writer of both packages."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish(tmp, p)
    except OSError as e:  # a full disk says which file it could not write
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(p)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_replace(path: str | Path, flag: str, overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing file without ``overwrite``.

    Raises:
        EdgesegError: naming ``flag`` and the file.
    """
    if not overwrite and Path(path).is_file():
        raise EdgesegError(f"{flag} {path}: exists; {OVERWRITE_HINT} it (nothing was written)")


def check_predictions_free(out: str | Path, files: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, to replace earlier predictions of these images in ``out``
    (``labels/STEM.png``, ``overlays/STEM.png``) without ``overwrite``.

    Raises:
        EdgesegError: naming the folder, how many images, and the first file.
    """
    if overwrite:
        return
    o = Path(out)
    names = [f"{f.stem}.png" for f in files]
    taken = [
        o / kind / n for n in names for kind in ("labels", "overlays") if (o / kind / n).exists()
    ]
    if taken:
        raise EdgesegError(
            f"--out {o}: already holds {len(taken)} prediction file(s) of these images (e.g. "
            f"{taken[0]}); {OVERWRITE_HINT} them, or choose another folder"
        )


def check_alpha(alpha: float) -> float:
    """An overlay opacity in [0, 1] (NaN refused).

    Raises:
        EdgesegError: naming ``--alpha``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise EdgesegError(f"--alpha {alpha}: expected an opacity in [0, 1]")
    return float(alpha)


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
    overlays: bool = True,
) -> dict[str, str]:
    """Write ``OUT/labels/STEM.png`` (class ids, palette attached) and
    ``OUT/overlays/STEM.png`` (the colours blended over the image; with ``legend``, the
    class key below it; none without ``overlays``). Returns their paths.

    The label file is written last, each file atomically: a label file that exists marks
    an image whose outputs are all complete (a resumed batch job skips it)."""
    o = Path(out)
    lbl, ov = o / "labels" / f"{stem}.png", o / "overlays" / f"{stem}.png"
    written = {}
    if overlays:
        shown = overlay(rgb, colorize(labels, palette), alpha)
        if legend:
            shown = with_legend(shown, classes, palette)
        atomic_write_bytes(ov, rgb_png(shown))
        written["overlay"] = str(ov)
    atomic_write_bytes(lbl, label_png(labels, palette))
    return {"labels": str(lbl), **written}
