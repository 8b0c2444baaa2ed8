"""Small synthetic datasets written to disk in the layouts edgeseg reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Colours of the synthetic classes: images are these colours plus noise, so the label is
# learnable from the pixel colour in a few steps.
COLOURS = np.array(
    [[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [40, 200, 200]], np.uint8
)


def synthetic_pair(
    rng: np.random.Generator, size: tuple[int, int], num_classes: int, void: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of coloured rectangles and its label map (with some void pixels)."""
    h, w = size
    label = np.zeros((h, w), np.uint8)
    for _ in range(4):
        c = rng.integers(0, num_classes)
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        y1, x1 = y0 + rng.integers(4, h // 2 + 4), x0 + rng.integers(4, w // 2 + 4)
        label[y0:y1, x0:x1] = c
    image = COLOURS[label % len(COLOURS)].astype(np.int16)
    image += rng.integers(-30, 30, size=image.shape, dtype=np.int16)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if void is not None:
        label[:2, :] = void
    return image, label


def make_list_dataset(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (24, 32),
    num_classes: int = 3,
    void: int | None = 255,
    seed: int = 0,
) -> Path:
    """Write ``root/{split}/*.png``, ``root/{split}annot/*.png`` and ``root/{split}.txt``."""
    splits = splits or {"train": 8, "val": 4}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in splits.items():
        (root / split).mkdir(exist_ok=True)
        (root / f"{split}annot").mkdir(exist_ok=True)
        lines = []
        for i in range(n):
            image, label = synthetic_pair(rng, size, num_classes, void)
            Image.fromarray(image).save(root / split / f"{i:03d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"{i:03d}.png")
            lines.append(f"{split}/{i:03d}.png {split}annot/{i:03d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_folder_dataset(
    root: Path,
    n: int = 10,
    size: tuple[int, int] = (24, 32),
    num_classes: int = 3,
    classes: list[str] | None = None,
    image_suffix: str = ".jpg",
) -> Path:
    """Write ``root/images/*.jpg`` and ``root/masks/*.png`` with matching stems (the
    layout most users have), and ``root/classes.txt`` when ``classes`` is given."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(n):
        image, label = synthetic_pair(rng, size, num_classes, 255)
        Image.fromarray(image).save(root / "images" / f"scene_{i:03d}{image_suffix}")
        Image.fromarray(label).save(root / "masks" / f"scene_{i:03d}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root
