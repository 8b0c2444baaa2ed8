"""Joint image/label augmentation built on albumentations.

Labels are always resampled with nearest-neighbour interpolation (a class id must never be
averaged) and padded with the void id, so padding is ignored by the loss. Every pipeline is
seeded per sample by :class:`~edgeseg.data.SegmentationDataset`, which makes an epoch's
augmentation independent of the number of workers and identical after a resume.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A
import cv2

__all__ = ["AlbumentationsJoint", "eval_transform", "train_transform"]


class AlbumentationsJoint:
    """Adapter: an ``A.Compose`` as a ``(image, label) -> (image, label)`` callable.

    Args:
        compose: the albumentations pipeline (its masks use nearest-neighbour).
    """

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose

    def set_random_seed(self, seed: int) -> None:
        """Seed every transform of the pipeline (called per sample)."""
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # OpenCV resamples uint8/uint16 masks; ids (and the void id 255) fit in a byte
        # for every preset, larger custom ids in 16 bits.
        dtype = np.uint8 if label.max(initial=0) < 256 else np.uint16
        out = self.compose(image=image, mask=label.astype(dtype))
        return out["image"], out["mask"]

    def __repr__(self) -> str:
        return f"AlbumentationsJoint({self.compose!r})"


def train_transform(
    crop_size: tuple[int, int] | None,
    *,
    ignore_index: int,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    translate: float = 0.0,
    color_jitter: float = 0.2,
) -> AlbumentationsJoint:
    """Training augmentation: random scale, translation, pad+crop, flip, colour jitter.

    Args:
        crop_size: ``(H, W)`` of the crops, or None to keep the (rescaled) full image.
        ignore_index: void id used to pad labels.
        scale: range of the random rescale factor; ``(1, 1)`` disables it.
        hflip: probability of a horizontal flip.
        translate: maximum shift as a fraction of the size (the thesis' translations).
        color_jitter: strength of brightness/contrast/saturation jitter (0 disables);
            hue moves by a quarter of it.
    """
    ops: list[A.BasicTransform] = []
    if tuple(scale) != (1.0, 1.0):
        ops.append(
            A.RandomScale(
                scale_limit=(scale[0] - 1.0, scale[1] - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    if translate > 0:
        ops.append(
            A.Affine(
                translate_percent=(-translate, translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
                p=0.5,
            )
        )
    if crop_size is not None:
        h, w = crop_size
        ops.append(
            A.RandomCrop(
                height=h,
                width=w,
                pad_if_needed=True,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            )
        )
    if hflip > 0:
        ops.append(A.HorizontalFlip(p=hflip))
    if color_jitter > 0:
        j = color_jitter
        ops.append(
            A.ColorJitter(
                brightness=(1 - j, 1 + j),
                contrast=(1 - j, 1 + j),
                saturation=(1 - j, 1 + j),
                hue=(-j / 4, j / 4),
                p=0.8,
            )
        )
    return AlbumentationsJoint(A.Compose(ops, mask_interpolation=cv2.INTER_NEAREST))


def eval_transform(size: tuple[int, int] | None) -> AlbumentationsJoint | None:
    """Resize to ``(H, W)`` for evaluation (bilinear image, nearest label), or None."""
    if size is None:
        return None
    h, w = size
    return AlbumentationsJoint(
        A.Compose(
            [A.Resize(h, w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)]
        )
    )
