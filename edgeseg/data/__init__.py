"""Datasets, presets, augmentation and class statistics.

:func:`build_dataset` is the one entry point the engine uses: it picks the dataset class
from the preset (``camvid`` and ``custom`` read ``ROOT/SPLIT.txt`` lists, ``cityscapes``
and ``coco_super`` read their official layouts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from edgeseg.data.cityscapes import CityscapesDataset
from edgeseg.data.class_files import folder_info, read_class_file
from edgeseg.data.coco import CocoDataset, CocoSuperDataset, coco_info
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
from edgeseg.errors import EdgesegError

__all__ = [
    "DATASETS",
    "PRESETS",
    "CityscapesDataset",
    "CocoDataset",
    "CocoSuperDataset",
    "DatasetInfo",
    "ListDataset",
    "SegmentationDataset",
    "build_dataset",
    "class_frequencies",
    "class_weights",
    "coco_info",
    "custom_info",
    "data_info",
    "default_palette",
    "folder_info",
    "get_preset",
    "load_image",
    "load_label",
    "normalize_image",
    "read_class_file",
    "read_list_file",
]

# preset -> dataset class; ``custom`` uses the list layout with user-given classes.
DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "camvid": ListDataset,
    "custom": ListDataset,
    "cityscapes": CityscapesDataset,
    "coco_super": CocoSuperDataset,
    "coco": CocoDataset,  # a labelling tool's COCO export (classes from its categories)
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


def data_info(
    root: str | Path | None,
    preset: str = "camvid",
    classes: list[str] | None = None,
    ignore_index: int = 255,
) -> DatasetInfo:
    """What a data folder's labels mean: the one loader train, eval, compare, export and
    predict share.

    In order: explicit ``classes`` (the ``custom`` preset, with ``ignore_index``); a class
    file in ``root`` (:data:`~edgeseg.data.class_files.CLASS_FILES`: names, void lines and
    mask colours); a COCO export in ``root`` (:data:`~edgeseg.data.coco.COCO_FILES`:
    background + its categories); else the named preset.

    Raises:
        EdgesegError: an unknown preset, ``custom`` without classes, a malformed class file.
    """
    if preset == "custom" and classes:
        return custom_info(classes, ignore_index=ignore_index)
    is_dir = bool(root) and Path(root).is_dir()
    found = folder_info(root) if is_dir else None
    if found is None and is_dir and preset != "coco_super":
        found = coco_info(root)  # a COCO export: background + its categories
    if found is not None:
        if ignore_index != 255 and found.ignore_index == 255 and found.label_map is None:
            found = dataclasses.replace(found, ignore_index=ignore_index)
        return found
    if preset == "custom":
        raise EdgesegError(
            "data.preset=custom needs data.classes (the class names) or a class file in the "
            "data folder (classes.txt, labelmap.txt, classes.json or classes.csv)"
        )
    return get_preset(preset)
