"""Plain folders of images and masks, the layout most users already have.

``ROOT`` may hold, in the order they are looked for:

1. ``SPLIT.txt`` list files (``image_path label_path`` per line), edgeseg's own layout;
2. ``SPLIT/images/`` and ``SPLIT/masks/`` (e.g. ``train/`` and ``val/``), or
3. one ``images/`` and one ``masks/`` folder: then ``val`` is a seeded
   :data:`VAL_FRACTION` of the pairs and ``train`` is the rest, so that a folder with no
   split at all still trains with validation.

Images and masks pair by file stem (``road_001.jpg`` with ``road_001.png``), as
segmentation_models_pytorch's examples and MMSegmentation's custom datasets do; a stem
without its partner is an error naming it. An optional ``ROOT/classes.txt`` (one class
name per line, the line number is the label id) gives the class names.
"""

from __future__ import annotations

import random
from pathlib import Path

from edgeseg.errors import DataError, EdgesegError
from edgeseg.utils import read_text

__all__ = [
    "IMAGE_SUFFIXES",
    "VAL_FRACTION",
    "find_pairs",
    "folder_classes",
    "match_folders",
    "read_list_file",
]

#: Files read as images or masks.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Share of a single ``images/`` + ``masks/`` folder held out as ``val`` (at least one pair).
VAL_FRACTION = 0.1
#: Seed of that hold-out (fixed, so train and val never overlap across runs).
SPLIT_SEED = 0


def read_list_file(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Read ``ROOT/SPLIT.txt``: one ``image_path label_path`` pair per line, relative to ROOT.

    Blank lines and lines starting with ``#`` are skipped.

    Raises:
        DataError: missing or empty list file, or a line that is not two paths.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root is not a folder: {root}")
    lst = root / f"{split}.txt"
    if not lst.is_file():
        have = sorted(p.stem for p in root.glob("*.txt"))
        raise DataError(
            f"list file not found: {lst} (splits in {root}: {', '.join(have) or 'none'})"
        )
    pairs: list[tuple[Path, Path]] = []
    try:
        content = read_text(lst, "list file")
    except EdgesegError as e:
        raise DataError(str(e)) from None
    for lineno, line in enumerate(content.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2:
            raise DataError(f"{lst}:{lineno}: expected 'image_path label_path', got {text[:80]!r}")
        pairs.append((root / parts[0], root / parts[1]))
    if not pairs:
        raise DataError(f"list file is empty: {lst}")
    return pairs


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in files:
                raise DataError(
                    f"two files with stem {p.stem!r} in {folder}: {files[p.stem].name}, {p.name}"
                )
            files[p.stem] = p
    return files


def match_folders(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs of two folders, matched by stem.

    Raises:
        DataError: an image without a mask (or the reverse), or no pairs at all.
    """
    ims, ms = _by_stem(images), _by_stem(masks)
    for have, other, what in ((ims, ms, "mask"), (ms, ims, "image")):
        lonely = sorted(set(have) - set(other))
        if lonely:
            first = have[lonely[0]]
            raise DataError(
                f"{first} has no {what} with the same name in {masks if what == 'mask' else images}"
                + (f" ({len(lonely)} unmatched)" if len(lonely) > 1 else "")
            )
    if not ims:
        raise DataError(f"no images in {images} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return [(ims[s], ms[s]) for s in sorted(ims)]


def _held_out(pairs: list[tuple[Path, Path]], split: str) -> list[tuple[Path, Path]]:
    order = list(range(len(pairs)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_val = max(1, round(VAL_FRACTION * len(pairs))) if len(pairs) > 1 else 0
    val = set(order[:n_val])
    return [p for i, p in enumerate(pairs) if (i in val) == (split == "val")]


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """The ``(image, label)`` paths of ``split`` under ``root``, in any layout above.

    Raises:
        DataError: no layout found (naming what was looked for), or unmatched names.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root is not a folder: {root}")
    if (root / f"{split}.txt").is_file():
        return read_list_file(root, split)
    sub = root / split
    if (sub / "images").is_dir() and (sub / "masks").is_dir():
        return match_folders(sub / "images", sub / "masks")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        if split not in ("train", "val"):
            raise DataError(f"split {split!r}: {root} has one images/ folder (splits: train, val)")
        return _held_out(match_folders(root / "images", root / "masks"), split)
    if any(root.glob("*.txt")):
        return read_list_file(root, split)  # its error names the splits there
    raise DataError(
        f"no data layout in {root}: expected {split}.txt, {split}/images + {split}/masks, "
        "or images/ + masks/"
    )


def folder_classes(root: str | Path) -> list[str] | None:
    """Class names from ``ROOT/classes.txt`` (one per line), or ``None`` without it."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return None
    try:
        names = [ln.strip() for ln in read_text(path, "class list").splitlines()]
    except EdgesegError as e:
        raise DataError(str(e)) from None
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataError(f"{path} lists no class names")
    return names
