"""Class files as labelling tools write them, and colour-coded masks.

A data folder may name its classes in one of these files (the first found wins):

- ``classes.txt``: one name per line; the line number (from 0) is the id in the masks.
- ``labelmap.txt``: CVAT's "Segmentation mask" export, ``name:r,g,b:parts:actions`` per
  line (``#`` comments): the masks are colour PNGs, each colour a class.
- ``classes.json``: ``[{"name": ..., "color": [r, g, b]}, ...]`` or ``{"name": [r, g,
  b], ...}`` (Label Studio, Roboflow and similar exports); without colours, ``["name",
  ...]``.
- ``classes.csv``: ``name,r,g,b`` rows (a header row is skipped), or ``name`` rows.

A class named ``void``, ``ignore``, ``unlabelled`` or ``unlabeled`` (any case) is the void
label: skipped by the loss and the metrics, not a class of the model. With colours, the
masks are decoded once into ids (:func:`decode_colors`); a colour the file does not name is
an error that lists each unknown colour with its pixel count.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.data.presets import DatasetInfo, default_palette
from edgeseg.errors import DataError, EdgesegError
from edgeseg.utils import read_text

__all__ = [
    "CLASS_FILES",
    "VOID_NAMES",
    "ClassFile",
    "decode_colors",
    "folder_info",
    "read_class_file",
]

#: Files read for class names (and colours), in the order they are looked for.
CLASS_FILES = ("classes.txt", "labelmap.txt", "classes.json", "classes.csv")
#: Names that mean "no class" in a class file (compared case-insensitively).
VOID_NAMES = frozenset({"void", "ignore", "unlabelled", "unlabeled"})
#: The void id when the void line is not the last one (ids are then remapped).
VOID_ID = 255

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassFile:
    """What a class file says: names in id order (void lines included) and, for colour
    masks, one colour per line."""

    path: Path  # the file read
    names: tuple[str, ...]  # every line's name; the index is the raw id in id masks
    colors: tuple[RGB, ...] | None  # each line's colour in colour masks; None: id masks

    @property
    def void(self) -> tuple[int, ...]:
        """Raw ids (line numbers) of the void lines."""
        return tuple(i for i, n in enumerate(self.names) if n.strip().lower() in VOID_NAMES)


def _color(text: str, where: str) -> RGB:
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    try:
        rgb = tuple(int(p) for p in parts)
    except ValueError:
        raise DataError(f"{where}: colour {text!r} is not r,g,b") from None
    if len(rgb) != 3 or any(not 0 <= v <= 255 for v in rgb):
        raise DataError(f"{where}: colour {text!r} is not three values in 0..255")
    return rgb  # type: ignore[return-value]


def _read_labelmap(path: Path, text: str) -> tuple[list[str], list[RGB] | None]:
    names, colors = [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        names.append(name.strip())
        colors.append(_color(rest.split(":", 1)[0], f"{path}:{n}"))
    return names, colors


def _read_json(path: Path, text: str) -> tuple[list[str], list[RGB] | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, dict):
        data = [{"name": k, "color": v} for k, v in data.items()]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of classes or a name -> colour mapping")
    names, colors = [], []
    for i, item in enumerate(data):
        if isinstance(item, str):
            names.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DataError(f"{path}: entry {i} has no name")
        names.append(item["name"])
        color = item.get("color", item.get("colour"))
        if color is not None:
            text_c = color if isinstance(color, str) else ",".join(map(str, color))
            if text_c.startswith("#") and len(text_c) == 7:  # "#rrggbb"
                text_c = ",".join(str(int(text_c[j : j + 2], 16)) for j in (1, 3, 5))
            colors.append(_color(text_c, f"{path}: entry {i}"))
    if colors and len(colors) != len(names):
        raise DataError(f"{path}: {len(colors)} colours for {len(names)} classes")
    return names, colors or None


def _read_csv(path: Path, text: str) -> tuple[list[str], list[RGB] | None]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
    if rows and len(rows[0]) == 4 and not rows[0][1].strip().isdigit():
        rows = rows[1:]  # a header: name,r,g,b
    if any(len(r) not in (1, 4) for r in rows):
        raise DataError(f"{path}: expected name or name,r,g,b on every row")
    names = [r[0].strip() for r in rows]
    if all(len(r) == 4 for r in rows):
        return names, [_color(",".join(r[1:]), f"{path}:{r[0]}") for r in rows]
    return names, None


def read_class_file(root: str | Path) -> ClassFile | None:
    """The first of :data:`CLASS_FILES` in ``root``, read; None when there is none.

    Raises:
        DataError: naming the file, when it is unreadable, empty or malformed.
    """
    for fname in CLASS_FILES:
        path = Path(root) / fname
        if not path.is_file():
            continue
        try:
            text = read_text(path, "class file")
        except EdgesegError as e:
            raise DataError(str(e)) from None
        if fname == "classes.txt":
            names = [ln.strip() for ln in text.splitlines()]
            names, colors = [n for n in names if n and not n.startswith("#")], None
        else:
            reader = {"labelmap.txt": _read_labelmap, "classes.json": _read_json}
            names, colors = reader.get(fname, _read_csv)(path, text)
        if not names or all(n.lower() in VOID_NAMES for n in names):
            raise DataError(f"{path} names no classes")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"{path}: class {dup!r} is named twice")
        if colors and len(set(colors)) != len(colors):
            raise DataError(f"{path}: two classes share a colour")
        return ClassFile(path, tuple(names), tuple(colors) if colors else None)
    return None


def folder_info(root: str | Path) -> DatasetInfo | None:
    """The :class:`DatasetInfo` a folder's class file describes, or None without one.

    Void lines are not classes: ids after them shift down (a 256-entry ``label_map`` of
    the raw ids) unless the void line is the last, whose id is then ``ignore_index``
    itself (CamVid's 11).
    """
    cf = read_class_file(root)
    if cf is None:
        return None
    void = cf.void
    keep = [i for i in range(len(cf.names)) if i not in void]
    names = tuple(cf.names[i] for i in keep)
    palette = tuple(cf.colors[i] for i in keep) if cf.colors else default_palette(len(names))
    trailing = void == tuple(range(len(keep), len(cf.names)))  # void lines only at the end
    ignore = void[0] if void and trailing and len(void) == 1 else VOID_ID
    label_map = None
    if void and not (trailing and len(void) == 1) and not cf.colors:
        lut = [VOID_ID] * 256
        for new, raw in enumerate(keep):
            if raw < 256:
                lut[raw] = new
        label_map = tuple(lut)
    color_map = None
    if cf.colors:  # colour masks decode straight to the final ids (void -> ignore)
        ids = {raw: new for new, raw in enumerate(keep)}
        color_map = tuple((*c, ids.get(raw, ignore)) for raw, c in enumerate(cf.colors))
    return DatasetInfo(
        name="custom",
        classes=names,
        palette=palette,
        ignore_index=ignore,
        label_map=label_map,
        color_map=color_map,  # type: ignore[arg-type]
    )


def decode_colors(rgb: np.ndarray, info: DatasetInfo, name: str) -> np.ndarray:
    """A colour mask ``(H, W, 3)`` uint8 -> class ids ``(H, W)`` int64.

    The colours are ``info.color_map`` (a class file's), else the preset's palette (CamVid's
    and Cityscapes' colour releases) with black as void.

    Raises:
        DataError: naming the mask, each unknown colour and its pixel count (up to 5).
    """
    entries = info.color_map or tuple((*c, i) for i, c in enumerate(info.palette)) + (
        (0, 0, 0, info.ignore_index),
    ) * ((0, 0, 0) not in info.palette)
    codes = np.array([(r << 16) | (g << 8) | b for r, g, b, _ in entries], np.int64)
    ids = np.array([i for *_, i in entries], np.int64)
    order = np.argsort(codes)
    codes, ids = codes[order], ids[order]
    px = rgb.astype(np.int64)
    key = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]  # (H, W)
    pos = np.searchsorted(codes, key).clip(0, len(codes) - 1)
    known = codes[pos] == key
    if not known.all():
        bad, counts = np.unique(key[~known], return_counts=True)
        top = np.argsort(-counts)[:5]
        listed = ", ".join(
            f"({bad[i] >> 16},{(bad[i] >> 8) & 255},{bad[i] & 255}) {counts[i]} px" for i in top
        )
        raise DataError(
            f"label {name} has {len(bad)} colour(s) the label map does not name: {listed}; "
            "add them to the class file (or name them void)"
        )
    return ids[pos]
