"""COCO super-classes (seed 003): 12 super-categories + background from instance masks.

Layout (the official 2017 release)::

    ROOT/annotations/instances_{train,val}2017.json
    ROOT/{train,val}2017/000000xxxxxx.jpg

Each image's label map is drawn from its instance annotations: polygons, uncompressed
RLE and compressed RLE are all decoded here (no pycocotools needed). Instances are drawn
largest first so that small objects on top of large ones stay visible; crowd regions
(``iscrowd=1``) become void (255), the usual practice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edgeseg.data.dataset import JointTransform, SegmentationDataset
from edgeseg.data.presets import COCO_SUPER, DatasetInfo
from edgeseg.errors import DataError

__all__ = ["CocoSuperDataset", "rle_decode", "rle_from_string"]


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


class CocoSuperDataset(SegmentationDataset):
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
        self.root = Path(root)
        if "+" in split:
            raise DataError(f"COCO: one split at a time, got {split!r}")
        folder = split if split[-4:].isdigit() else f"{split}{year}"
        self.split = split
        ann_file = self.root / "annotations" / f"instances_{folder}.json"
        if not ann_file.is_file():
            raise DataError(f"COCO annotations not found: {ann_file}")
        try:
            data = json.loads(ann_file.read_text(encoding="utf-8"))
            cats = {c["id"]: c["supercategory"] for c in data["categories"]}
            images = data["images"]
            anns = data["annotations"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"malformed COCO annotation file {ann_file}: {e}") from None
        index = {name: i for i, name in enumerate(info.classes)}
        unknown = sorted(set(cats.values()) - set(index))
        if unknown:
            raise DataError(f"{ann_file}: super-categories {unknown} are not in the preset")
        self._cat_to_class = {cid: index[sc] for cid, sc in cats.items()}
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in anns:
            by_image[a["image_id"]].append(a)
        samples = [
            (self.root / folder / im["file_name"], (im["id"], ann_file))
            for im in sorted(images, key=lambda im: im["id"])
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
