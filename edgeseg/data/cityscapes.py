"""Cityscapes in its official folder layout, with labelIds mapped to the 19 trainIds.

Layout (as unpacked from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    ROOT/leftImg8bit/{train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.data.dataset import SplitDataset
from edgeseg.data.presets import CITYSCAPES, DatasetInfo
from edgeseg.errors import DataError

__all__ = ["CityscapesDataset", "cityscapes_pairs"]

_IMG_SUFFIX = "_leftImg8bit.png"
_LBL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Image/label path pairs of one split, sorted by city and frame.

    Raises:
        DataError: the split folder is missing or empty, or an image has no label file.
    """
    root = Path(root)
    img_dir = root / "leftImg8bit" / split
    if not img_dir.is_dir():
        raise DataError(f"Cityscapes images not found: {img_dir}")
    pairs = []
    for img in sorted(img_dir.glob(f"*/*{_IMG_SUFFIX}")):
        stem = img.name[: -len(_IMG_SUFFIX)]
        lbl = root / "gtFine" / split / img.parent.name / f"{stem}{_LBL_SUFFIX}"
        if not lbl.is_file():
            raise DataError(f"Cityscapes label not found for {img}: {lbl}")
        pairs.append((img, lbl))
    if not pairs:
        raise DataError(f"no *{_IMG_SUFFIX} files under {img_dir}")
    return pairs


class CityscapesDataset(SplitDataset):
    """Cityscapes fine annotations; labels are mapped to trainIds 0..18, void 255.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``, or several joined with ``+``.
        info: defaults to the Cityscapes preset.
        transform, in_memory, seed: see :class:`~edgeseg.data.SegmentationDataset`.
    """

    split_pairs = staticmethod(cityscapes_pairs)

    def __init__(
        self, root: str | Path, split: str, info: DatasetInfo = CITYSCAPES, **kw: Any
    ) -> None:
        super().__init__(root, split, info, **kw)
