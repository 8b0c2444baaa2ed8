"""Image/label pair datasets: validated loading, optional in-memory decoding, augmentation.

Every problem with a file is reported as one :class:`~edgeseg.errors.DataError` line that
names the file: a missing or corrupt image, a label whose size differs from its image,
label ids outside ``[0, K)`` other than the void id, an RGB label, an empty or malformed
list file.

Images that are not RGB are **converted** (grayscale is replicated to three channels, an
alpha channel is dropped, palette images are expanded); 16-bit and float images are
refused, since their scaling to 8 bits is ambiguous. Labels must be single-channel
(mode ``L``, ``P`` or 16-bit ``I;16``); an RGB label is refused.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime.processing import open_bounded
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from edgeseg.data.class_files import decode_colors
from edgeseg.data.folder import find_pairs, read_list_file
from edgeseg.data.presets import DatasetInfo
from edgeseg.errors import DataError, EdgesegError

__all__ = [
    "ListDataset",
    "SegmentationDataset",
    "SplitDataset",
    "load_image",
    "load_label",
    "normalize_image",
    "read_list_file",
]

log = logging.getLogger(__name__)

# (image HWC uint8, label HW int64) -> same, augmented
JointTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_REFUSED_IMAGE_MODES = {"I", "I;16", "I;16B", "I;16L", "F"}
_LABEL_MODES = {"L", "P", "I;16", "I;16B", "I;16L", "I"}


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return open_bounded(path, what)  # a huge one refused before decoding a byte
    except EdgesegError as e:
        raise DataError(str(e)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read {what} {path}: {e}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``(H, W, 3)`` uint8 (non-RGB 8-bit modes are converted).

    Raises:
        DataError: missing, unreadable, or a 16-bit/float image.
    """
    path = Path(path)
    img = _open(path, "image")
    if img.mode in _REFUSED_IMAGE_MODES:
        raise DataError(
            f"image {path} has mode {img.mode} (16-bit or float); convert it to 8-bit RGB"
        )
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def load_label(path: str | Path, info: DatasetInfo | None = None) -> np.ndarray:
    """Read a label map as ``(H, W)`` int64 ids.

    Single-channel masks hold the ids; colour masks are decoded with ``info``'s colours
    (a class file's ``color_map``, else the palette: CamVid's or Cityscapes' colour
    releases). With a ``color_map`` every mask is read as colours, palette PNGs included.

    Raises:
        DataError: missing or unreadable file, a colour mask without colours to read it
            by, or colours the map does not name (with their pixel counts).
    """
    path = Path(path)
    img = _open(path, "label")
    colour = info is not None and info.color_map is not None
    if img.mode in _LABEL_MODES and not colour:
        return np.asarray(img).astype(np.int64)
    if info is None or img.mode not in ("RGB", "RGBA", "P", "L"):
        raise DataError(
            f"label {path} has mode {img.mode}; expected single-channel class ids "
            "(mode L, P or I;16), or a colour mask with a class file of colours "
            "(labelmap.txt, classes.json, classes.csv)"
        )
    return decode_colors(np.asarray(img.convert("RGB")), info, str(path))


def normalize_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 tensor, scaled to [0, 1] and normalised."""
    # Read-only arrays (np.asarray of a PIL image) are copied; torch warns on them.
    arr = np.ascontiguousarray(image)
    t = torch.from_numpy(arr) if arr.flags.writeable else torch.tensor(arr)
    x = t.permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return x.sub_(m).div_(s)


class SegmentationDataset(Dataset):
    """Image/label pairs with validation, optional caching and seeded joint augmentation.

    Items are ``(image, label)``: a normalised ``(3, H, W)`` float32 tensor and an
    ``(H, W)`` int64 tensor of class ids with ``info.ignore_index`` for void.

    Augmentation is seeded per sample from ``(seed, epoch, index)``, so an epoch's images
    are the same whatever the number of DataLoader workers and after a resume; call
    :meth:`set_epoch` before each epoch.

    Args:
        samples: ``(image_path, label_source)`` pairs; the label source is a path, or any
            object that a subclass's :meth:`read_label` understands.
        info: the dataset's classes, palette, void id and label mapping.
        transform: joint transform on ``(image uint8 HWC, label int64 HW)``, or None.
        in_memory: decode every pair once and keep the arrays (uint8), for fast epochs.
        seed: base seed of the augmentation.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Any]],
        info: DatasetInfo,
        transform: JointTransform | None = None,
        *,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        if not samples:
            raise DataError(f"{info.name}: no samples")
        self.samples = list(samples)
        self.info = info
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self._lut = info.lut()
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        missing = [p for p, _ in self.samples if not Path(p).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"image not found: {missing[0]}{more}")
        if in_memory:
            self._cache = [self.load_pair(i) for i in range(len(self.samples))]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return self.info.num_classes

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def read_label(self, source: Any, image_size: tuple[int, int]) -> np.ndarray:
        """Raw label ids ``(H, W)`` for one sample (before the preset's label mapping)."""
        return load_label(source, self.info)

    def label_name(self, index: int) -> str:
        """How to name sample ``index``'s label in an error message."""
        return str(self.samples[index][1])

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode and validate sample ``index``: image ``(H, W, 3)`` uint8, label ``(H, W)``.

        Raises:
            DataError: naming the file, for every kind of bad input.
        """
        if self._cache is not None:
            return self._cache[index]
        img_path, label_src = self.samples[index]
        image = load_image(img_path)
        label = self.read_label(label_src, image.shape[:2])
        name = self.label_name(index)
        if label.shape != image.shape[:2]:
            raise DataError(
                f"label {name} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
                f"{img_path} is {image.shape[1]}x{image.shape[0]}"
            )
        if self._lut is not None:
            if label.min() < 0 or label.max() >= len(self._lut):
                raise DataError(f"label {name} has ids outside the preset's 0..255 mapping")
            label = self._lut[label]
        k, void = self.info.num_classes, self.info.ignore_index
        bad = (label < 0) | ((label >= k) & (label != void))
        if bad.any():
            ids = sorted({int(v) for v in np.unique(label[bad])})[:8]
            fix = (
                f"if {ids[0]} marks unlabelled pixels, set data.ignore_index={ids[0]} or "
                "add a 'void' line for it to classes.txt"
                if len(ids) == 1 and ids[0] >= k
                else "check the number of classes or the dataset preset"
            )
            where = f"label {name} has ids {ids} outside 0..{k - 1} (void is {void})"
            raise DataError(f"{where}; {fix}")
        # uint8 halves the cache when ids fit; the void id 255 fits too.
        if label.max(initial=0) < 256:
            label = label.astype(np.uint8)
        return image, label

    def _sample_seed(self, index: int) -> int:
        key = f"{self.seed}:{self.epoch}:{index}".encode()
        return zlib.crc32(key)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load_pair(index)
        if self.transform is not None:
            seed = self._sample_seed(index)
            set_seed = getattr(self.transform, "set_random_seed", None)
            if set_seed is not None:
                set_seed(seed)
            else:  # a plain callable: give it seeded global RNGs
                random.seed(seed)
                np.random.seed(seed)
            image, label = self.transform(image, label)
        x = normalize_image(image, self.info.mean, self.info.std)
        y = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        return x, y

    def validate(self) -> None:
        """Decode every sample once, so that a bad file fails now rather than mid-epoch."""
        for i in range(len(self)):
            self.load_pair(i)


class SplitDataset(SegmentationDataset):
    """A dataset whose samples come from a layout on disk, one split (or ``a+b``) at a time.

    Subclasses say how one split's ``(image, label)`` paths are found
    (:meth:`split_pairs`); ``"train+val"`` concatenates splits (e.g. a recipe's final fit).

    Args:
        root: the data root.
        split: split name, or several joined with ``+``.
        info: classes, palette, void id.
        transform, in_memory, seed: see :class:`SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        info: DatasetInfo,
        transform: JointTransform | None = None,
        *,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        pairs = [p for part in split.split("+") for p in self.split_pairs(self.root, part)]
        super().__init__(pairs, info, transform, in_memory=in_memory, seed=seed)

    @staticmethod
    def split_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
        """``(image, label)`` paths of one split."""
        raise NotImplementedError


class ListDataset(SplitDataset):
    """The generic dataset: ``ROOT/SPLIT.txt`` lists of ``image_path label_path`` pairs,
    or plain ``images/`` + ``masks/`` folders (:mod:`edgeseg.data.folder`).

    ``split`` is ``train``, ``val``, ``test`` or any ``NAME`` with a ``NAME.txt`` (or a
    ``NAME/`` folder); several joined with ``+`` (``train+val``) are concatenated.
    ``info`` is a preset or :func:`~edgeseg.data.custom_info`.
    """

    @staticmethod
    def split_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
        """``(image, label)`` paths of one split, in any layout :func:`find_pairs` reads."""
        return find_pairs(root, split)
