"""Toy street scenes generated on the fly: a dataset anyone can run a comparison on.

Each image is a procedural road scene (sky, buildings with windows, road with lane marks,
pavement, poles, cars and trees) with per-class texture and noise, and its exact label
map. It is small enough to train several models on two CPU cores in minutes, and hard
enough (thin poles, occlusion, texture) that the models do not all tie. It is written in
the ``custom`` list layout (``ROOT/SPLIT.txt`` of ``image label`` lines) that
:class:`edgeseg.data.ListDataset` reads, so it exercises the same code as a user's folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeseg.data.presets import DatasetInfo, custom_info

__all__ = ["SYNTHETIC_CLASSES", "make_street_dataset", "street_info", "street_scene"]

SYNTHETIC_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "car")
VOID = 255
# Mean colour of each class; texture and noise are added on top.
_COLOURS = np.array(
    [
        [135, 180, 230],  # sky
        [150, 110, 90],  # building
        [90, 90, 95],  # pole
        [100, 100, 105],  # road
        [175, 165, 150],  # pavement
        [60, 130, 50],  # tree
        [180, 30, 40],  # car
    ],
    np.float32,
)


def street_info() -> DatasetInfo:
    """The classes and palette of :func:`street_scene` (void = 255)."""
    palette = [
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (64, 0, 128),
    ]
    return custom_info(SYNTHETIC_CLASSES, ignore_index=VOID, palette=palette)


def street_scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image (H, W, 3) uint8, label (H, W) uint8)``."""
    h, w = size
    label = np.zeros((h, w), np.uint8)  # sky everywhere first
    horizon = int(h * rng.uniform(0.35, 0.55))
    ys, xs = np.mgrid[0:h, 0:w]
    # Buildings: a skyline of blocks standing on the horizon.
    x = 0
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(h // 12, max(h // 12 + 1, horizon - h // 10)))
        if rng.random() < 0.85:
            label[top:horizon, x : x + bw] = 1
        x += bw
    # Road below the horizon, a perspective trapezoid; pavement beside it.
    label[horizon:, :] = 4
    centre = w * rng.uniform(0.35, 0.65)
    half = (ys - horizon) / max(h - horizon, 1) * w * rng.uniform(0.45, 0.7) + w * 0.04
    road = (ys >= horizon) & (np.abs(xs - centre) < half)
    label[road] = 3
    # Trees: round crowns on trunks (trunks are labelled tree too).
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0, w), rng.uniform(horizon * 0.4, horizon)
        r = rng.uniform(h * 0.06, h * 0.14)
        label[(xs - cx) ** 2 + (ys - cy) ** 2 < r * r] = 5
        label[int(cy) : horizon + h // 20, max(int(cx) - 1, 0) : int(cx) + 2] = 5
    # Poles: thin and tall, the class every small network finds hard.
    for _ in range(int(rng.integers(1, 4))):
        px = int(rng.uniform(0, w - 3))
        top = int(rng.uniform(h * 0.1, horizon * 0.8))
        bottom = int(min(h - 1, horizon + rng.uniform(h * 0.05, h * 0.25)))
        label[top:bottom, px : px + max(2, w // 100)] = 2
    # Cars: boxes on the road, lower and bigger when nearer.
    for _ in range(int(rng.integers(0, 4))):
        cy = rng.uniform(horizon + (h - horizon) * 0.15, h * 0.95)
        depth = (cy - horizon) / max(h - horizon, 1)
        cw, ch = w * (0.06 + 0.2 * depth), h * (0.04 + 0.13 * depth)
        cx = rng.uniform(centre - w * 0.3, centre + w * 0.3)
        y0, x0 = int(cy - ch), int(cx - cw / 2)
        label[max(y0, 0) : int(cy), max(x0, 0) : max(int(cx + cw / 2), 0)] = 6
    # Colours: class mean, a per-image lighting gain, class textures, pixel noise.
    image = _COLOURS[label] * rng.uniform(0.75, 1.2)
    windows = (label == 1) & ((ys // max(h // 30, 2)) % 3 == 0) & ((xs // max(w // 40, 2)) % 3 == 0)
    image[windows] *= 0.55
    marks = road & (np.abs(xs - centre) < w * 0.008 + 1) & ((ys // max(h // 25, 2)) % 2 == 0)
    image[marks] = 235
    image[label == 5] *= rng.uniform(0.7, 1.3, size=(int((label == 5).sum()), 1))
    image += rng.normal(0, 9, size=image.shape)
    # A void band where a real dataset would have unlabelled pixels: the bonnet.
    label[h - max(h // 40, 1) :, :] = VOID
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_street_dataset(
    root: str | Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (120, 160),
    seed: int = 0,
) -> Path:
    """Write street scenes to ``root`` in the ``custom`` list layout.

    Args:
        root: output folder (created); ``root/SPLIT/*.png``, ``root/SPLITannot/*.png`` and
            ``root/SPLIT.txt`` and ``root/classes.txt`` are written. Existing files of the
            same names are replaced.
        splits: images per split (default ``{"train": 60, "val": 16}``).
        size: ``(H, W)`` of every image.
        seed: the scenes are a pure function of the seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (splits or {"train": 60, "val": 16}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            image, label = street_scene(rng, size)
            Image.fromarray(image).save(root / split / f"{i:04d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"{i:04d}.png")
            lines.append(f"{split}/{i:04d}.png {split}annot/{i:04d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # The folder names its classes, as a user's would (void 255 is not a class).
    (root / "classes.txt").write_text("\n".join(SYNTHETIC_CLASSES) + "\n", encoding="utf-8")
    return root
