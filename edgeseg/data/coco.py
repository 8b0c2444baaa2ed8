"""COCO-format polygon and RLE annotations drawn into label maps.

Two readers share one decoder:

* :class:`CocoDataset`: a labelling tool's COCO export (CVAT "COCO 1.0", Roboflow "COCO
  Segmentation", Label Studio "COCO"), classes = background + the file's categories::

      ROOT/SPLIT/_annotations.coco.json        (Roboflow: images beside it)
      ROOT/annotations/instances_SPLIT.json    (CVAT, COCO: images in ROOT/images[/SPLIT])
      ROOT/annotations/SPLIT.json

* :class:`CocoSuperDataset` (seed 003): the official 2017 release drawn into 12
  super-categories + background::

      ROOT/annotations/instances_{train,val}2017.json
      ROOT/{train,val}2017/000000xxxxxx.jpg

Each image's label map is drawn from its instance annotations: polygons, uncompressed
RLE and compressed RLE are all decoded here (no pycocotools needed). Instances are drawn
largest first so that small objects on top of large ones stay visible; crowd regions
(``iscrowd=1``) become void (255), the usual practice.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edgeseg.data.dataset import JointTransform, SegmentationDataset
from edgeseg.data.presets import COCO_SUPER, DatasetInfo, custom_info
from edgeseg.errors import DataError

__all__ = [
    "COCO_FILES",
    "CocoDataset",
    "CocoSuperDataset",
    "coco_file",
    "coco_info",
    "rle_decode",
    "rle_from_string",
]


def rle_from_string(s: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths (``rleFrString`` of the API).

    Each count is stored in 5-bit groups with a continuation bit (0x20) and a sign bit
    (0x10) on the last group; from the third count on, counts are deltas from the count
    two places earlier.
    """
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``{"size": [h, w], "counts": list | str}``) -> ``(h, w)`` bool mask.

    Runs alternate 0s and 1s, starting with 0s, over the mask in column-major order.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = rle_from_string(counts)
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


# Where a split's annotation file sits in the exports of the common labelling tools.
COCO_FILES = (
    "{split}/_annotations.coco.json",
    "annotations/instances_{split}.json",
    "annotations/{split}.json",
)


def coco_file(root: str | Path, split: str) -> Path | None:
    """The COCO annotation file of ``split`` under ``root`` (:data:`COCO_FILES`), or None."""
    for pattern in COCO_FILES:
        path = Path(root) / pattern.format(split=split)
        if path.is_file():
            return path
    return None


def _read_coco(ann_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
        if not all(isinstance(data[k], list) for k in ("categories", "images", "annotations")):
            raise TypeError("categories, images and annotations must be lists")
        return data
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"malformed COCO annotation file {ann_file}: {e}") from None


def coco_info(root: str | Path) -> DatasetInfo | None:
    """The classes of a COCO export at ``root`` (background + its categories in id
    order; a category named ``background`` is that class), or None without one."""
    root = Path(root)
    found = sorted(root.glob("*/_annotations.coco.json")) + sorted(root.glob("annotations/*.json"))
    if not found:
        return None
    data = _read_coco(found[0])
    try:
        names = [str(c["name"]) for c in sorted(data["categories"], key=lambda c: c["id"])]
    except (KeyError, TypeError) as e:
        raise DataError(f"malformed COCO categories in {found[0]}: {e}") from None
    names = [n for n in names if n.lower() != "background"]
    info = custom_info(["background", *names])
    return dataclasses.replace(info, name="coco")


class CocoDataset(SegmentationDataset):
    """Images with label maps drawn from a COCO annotation file's polygons and RLEs.

    Unannotated pixels are class 0 (background); instances are drawn largest first, so
    small objects on top of large ones stay visible; crowd regions (``iscrowd=1``) are void.

    Args:
        root: the export's folder (see :data:`COCO_FILES`).
        split: the split (``train``, ``val``, ``valid``, ``default`` ...).
        info: the classes (default: :func:`coco_info` of ``root``); categories map to
            them by ``name`` (or by ``key``).
        transform, in_memory, seed: see :class:`~edgeseg.data.SegmentationDataset`.
        ann_file, image_dir: where the annotations and the images are (default: found).
        key: the category field that names the class (``supercategory`` for seed 003's).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        info: DatasetInfo | None = None,
        transform: JointTransform | None = None,
        *,
        in_memory: bool = False,
        seed: int = 0,
        ann_file: Path | None = None,
        image_dir: Path | None = None,
        key: str = "name",
    ) -> None:
        self.root, self.split = Path(root), split
        if "+" in split:
            raise DataError(f"COCO: one split at a time, got {split!r}")
        ann_file = ann_file or coco_file(self.root, split)
        if ann_file is None or not ann_file.is_file():
            tried = ", ".join(str(self.root / p.format(split=split)) for p in COCO_FILES)
            raise DataError(f"COCO annotations not found: {ann_file or tried}")
        info = info or coco_info(self.root) or COCO_SUPER
        data = _read_coco(ann_file)
        self._cat_to_class = _category_ids(data["categories"], info, key, ann_file)
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in data["annotations"]:
            by_image[a["image_id"]].append(a)
        folder = image_dir or _image_dir(self.root, split, ann_file)
        samples = [
            (_image_path(self.root, folder, im["file_name"]), (im["id"], ann_file))
            for im in sorted(data["images"], key=lambda im: im["id"])
        ]
        self._anns = by_image
        super().__init__(samples, info, transform, in_memory=in_memory, seed=seed)

    def label_name(self, index: int) -> str:
        image_id, ann_file = self.samples[index][1]
        return f"{ann_file} (image id {image_id})"

    def read_label(self, source: Any, image_size: tuple[int, int]) -> np.ndarray:
        image_id, ann_file = source
        h, w = image_size
        label = np.zeros((h, w), dtype=np.int64)
        void = self.info.ignore_index
        for a in sorted(self._anns.get(image_id, []), key=lambda a: -float(a.get("area", 0))):
            try:
                mask = self._mask(a, h, w)
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(
                    f"{ann_file}: bad segmentation in annotation {a.get('id')}: {e}"
                ) from None
            label[mask] = void if a.get("iscrowd", 0) else self._cat_to_class[a["category_id"]]
        return label

    @staticmethod
    def _mask(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
        seg = ann["segmentation"]
        if isinstance(seg, list):  # polygons [x0, y0, x1, y1, ...]
            canvas = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(canvas)
            for poly in seg:
                if len(poly) >= 6:
                    draw.polygon([float(v) for v in poly], fill=1, outline=1)
            return np.asarray(canvas, dtype=bool)
        mask = rle_decode(seg)
        if mask.shape != (h, w):
            raise ValueError(f"RLE is {mask.shape}, image is {(h, w)}")
        return mask


class CocoSuperDataset(CocoDataset):
    """COCO images with labels 0 (background) .. 12 (the 12 super-categories).

    Args:
        root: the folder holding ``annotations/`` and the image folders.
        split: ``train`` or ``val`` (``train2017``/``val2017``), or a full folder name.
        year: the release year in the file names.
        info: defaults to the ``coco_super`` preset.
        transform, in_memory, seed: see :class:`~edgeseg.data.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        year: int = 2017,
        info: DatasetInfo = COCO_SUPER,
        transform: JointTransform | None = None,
        *,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        if "+" in split:
            raise DataError(f"COCO: one split at a time, got {split!r}")
        folder = split if split[-4:].isdigit() else f"{split}{year}"
        super().__init__(
            root,
            split,
            info,
            transform,
            in_memory=in_memory,
            seed=seed,
            ann_file=Path(root) / "annotations" / f"instances_{folder}.json",
            image_dir=Path(root) / folder,
            key="supercategory",
        )


def _category_ids(
    categories: list[Any], info: DatasetInfo, key: str, ann_file: Path
) -> dict[int, int]:
    """``{category id: class id}``: each category's ``key`` field names its class."""
    index = {name: i for i, name in enumerate(info.classes)}
    try:
        cats = {int(c["id"]): str(c[key]) for c in categories}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"malformed COCO categories in {ann_file}: {e}") from None
    unknown = sorted({n for n in cats.values() if n not in index and n.lower() != "background"})
    if unknown:
        raise DataError(
            f"{ann_file}: categories {unknown} are not among the classes {list(info.classes)}"
        )
    return {cid: index.get(n, 0) for cid, n in cats.items()}


def _image_dir(root: Path, split: str, ann_file: Path) -> Path:
    """Where an export keeps a split's images: beside the annotations (Roboflow),
    ``images/SPLIT`` or ``images`` (CVAT), ``SPLIT`` or the root itself."""
    if ann_file.name == "_annotations.coco.json":
        return ann_file.parent
    for folder in (root / "images" / split, root / "images", root / split):
        if folder.is_dir():
            return folder
    return root


def _image_path(root: Path, folder: Path, file_name: Any) -> Path:
    """An image's file: relative to the image folder, else to the root (Label Studio
    writes ``images/NAME``), else its base name in the image folder."""
    name = str(file_name)
    for path in (folder / name, root / name, folder / Path(name).name):
        if path.is_file():
            return path
    return folder / name
