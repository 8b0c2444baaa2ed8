"""Dataset presets: class names, colour palette, void id and label mapping of each dataset.

A preset is all a checkpoint needs to know about its data to segment new images and to
draw the result: it is stored inside every checkpoint (see :mod:`edgeseg.engine.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from edgeseg_runtime.card import default_palette as _runtime_palette

from edgeseg.errors import EdgesegError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "DatasetInfo",
    "custom_info",
    "default_palette",
    "get_preset",
]

# Normalisation of every recipe: ImageNet statistics, the convention of timm/torchvision,
# so that backbones pretrained elsewhere can be dropped in.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model must know about its dataset's labels.

    Attributes:
        name: preset name (``camvid``, ``cityscapes``, ``coco_super`` or ``custom``).
        classes: class names, index = class id.
        palette: one RGB colour per class, for overlays and colour label maps.
        ignore_index: the void id: skipped by the loss and the metrics.
        mean: per-channel mean of the input normalisation (images scaled to [0, 1]).
        std: per-channel standard deviation of the input normalisation.
        label_map: optional 256-entry lookup applied to raw label files (e.g. Cityscapes
            labelIds -> trainIds); values are class ids or ``ignore_index``.
        color_map: for colour-coded masks, ``(r, g, b, id)`` of every colour in them (void
            colours map to ``ignore_index``); None: masks hold ids (an RGB mask is then
            read with :attr:`palette`).
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_map: tuple[int, ...] | None = field(default=None, repr=False)
    color_map: tuple[tuple[int, int, int, int], ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{self.name}: {len(self.palette)} colours for {len(self.classes)}")
        if 0 <= self.ignore_index < len(self.classes):
            raise ValueError(f"{self.name}: ignore id {self.ignore_index} is a class id")

    @property
    def num_classes(self) -> int:
        """Number of classes K (void excluded)."""
        return len(self.classes)

    def lut(self) -> np.ndarray | None:
        """The label mapping as a uint8/int64 array of 256 entries, or None."""
        return None if self.label_map is None else np.asarray(self.label_map, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists, not tuples), as stored in checkpoints."""
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["palette"] = [list(c) for c in self.palette]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["label_map"] = None if self.label_map is None else list(self.label_map)
        d["color_map"] = None if self.color_map is None else [list(c) for c in self.color_map]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        """Inverse of :meth:`to_dict`."""
        lm, cm = d.get("label_map"), d.get("color_map")
        return cls(
            name=str(d["name"]),
            classes=tuple(d["classes"]),
            palette=tuple(tuple(int(v) for v in c) for c in d["palette"]),  # type: ignore[misc]
            ignore_index=int(d["ignore_index"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            label_map=None if lm is None else tuple(int(v) for v in lm),
            color_map=None if cm is None else tuple(tuple(int(v) for v in c) for c in cm),  # type: ignore[misc]
        )


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for ``n`` classes: the PASCAL VOC bit-interleaving palette (the
    runtime's, so a class has one colour on the device and here)."""
    return tuple(_runtime_palette(n))


# fmt: off
CAMVID = DatasetInfo(
    name="camvid",
    classes=(
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    ),
    palette=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
        (0, 128, 192),
    ),
    ignore_index=11,
)
# fmt: on

# Cityscapes labelIds (the *_gtFine_labelIds.png files) -> the 19 trainIds of the benchmark;
# every other id (void, rare classes such as caravan or trailer) becomes 255.
# fmt: off
_CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# fmt: on

# fmt: off
CITYSCAPES = DatasetInfo(
    name="cityscapes",
    classes=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
        "bus", "train", "motorcycle", "bicycle",
    ),
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    ignore_index=255,
    label_map=tuple(_CITYSCAPES_TRAIN_IDS.get(i, 255) for i in range(256)),
)
# fmt: on

# Seed 003's 13 classes: background plus COCO's 12 super-categories (the "supercategory"
# field of the instance annotations), in the spec's order.
# fmt: off
COCO_SUPER = DatasetInfo(
    name="coco_super",
    classes=(
        "background", "appliance", "electronic", "accessory", "kitchen", "sports",
        "vehicle", "furniture", "food", "outdoor", "indoor", "animal", "person",
    ),
    palette=default_palette(13),
    ignore_index=255,
)
# fmt: on

PRESETS: dict[str, DatasetInfo] = {p.name: p for p in (CAMVID, CITYSCAPES, COCO_SUPER)}


def get_preset(name: str) -> DatasetInfo:
    """The preset called ``name``; raises a one-line error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise EdgesegError(
            f"unknown dataset preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None


def custom_info(
    classes: Sequence[str] | int,
    ignore_index: int = 255,
    palette: Sequence[Sequence[int]] | None = None,
) -> DatasetInfo:
    """A :class:`DatasetInfo` for a folder of pairs that no preset describes.

    Args:
        classes: class names, or their number (names become ``"0"``, ``"1"``, ...).
        ignore_index: the void id in the label files.
        palette: RGB colours (default: :func:`default_palette`).
    """
    names = tuple(str(i) for i in range(classes)) if isinstance(classes, int) else tuple(classes)
    pal = default_palette(len(names)) if palette is None else tuple(tuple(c) for c in palette)
    return DatasetInfo(name="custom", classes=names, palette=pal, ignore_index=ignore_index)  # type: ignore[arg-type]
