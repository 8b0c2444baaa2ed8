"""Datasets, presets, augmentation and class statistics.

:func:`build_dataset` is the one entry point the engine uses: it picks the dataset class
from the preset (``camvid`` and ``custom`` read ``ROOT/SPLIT.txt`` lists, ``cityscapes``
and ``coco_super`` read their official layouts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeseg.data.cityscapes import CityscapesDataset
from edgeseg.data.coco import CocoSuperDataset
from edgeseg.data.dataset import (
    JointTransform,
    ListDataset,
    SegmentationDataset,
    load_image,
    load_label,
    normalize_image,
    read_list_file,
)
from edgeseg.data.presets import PRESETS, DatasetInfo, custom_info, default_palette, get_preset
from edgeseg.data.stats import class_frequencies, class_weights

__all__ = [
    "DATASETS",
    "PRESETS",
    "CityscapesDataset",
    "CocoSuperDataset",
    "DatasetInfo",
    "ListDataset",
    "SegmentationDataset",
    "build_dataset",
    "class_frequencies",
    "class_weights",
    "custom_info",
    "default_palette",
    "get_preset",
    "load_image",
    "load_label",
    "normalize_image",
    "read_list_file",
]

# preset -> dataset class; ``custom`` uses the list layout with user-given classes.
DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "camvid": ListDataset,
    "custom": ListDataset,
    "cityscapes": CityscapesDataset,
    "coco_super": CocoSuperDataset,
}


def build_dataset(
    root: str | Path,
    split: str,
    info: DatasetInfo,
    transform: JointTransform | None = None,
    *,
    in_memory: bool = False,
    seed: int = 0,
) -> SegmentationDataset:
    """The dataset of ``info.name``'s layout at ``root`` for ``split``.

    Args:
        root: data root.
        split: split name (``train``, ``val``, ``test`` ...).
        info: preset (``get_preset("camvid")``) or ``custom_info(...)``.
        transform: joint augmentation (see :mod:`edgeseg.data.transforms`).
        in_memory: decode every sample once up front.
        seed: augmentation seed.
    """
    factory = DATASETS.get(info.name, ListDataset)
    return factory(root, split, info=info, transform=transform, in_memory=in_memory, seed=seed)
