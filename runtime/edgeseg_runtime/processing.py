"""Pre- and post-processing of edgeseg's segmenters, in numpy: the one implementation.

Both the PyTorch :class:`edgeseg.Segmenter` and the torch-free
:class:`edgeseg_runtime.Segmenter` call these, so an image gives the same labels on a
device as on the machine that trained the network:

* :func:`read_image` / :func:`as_rgb`: a file, PIL image or array -> ``(H, W, 3)`` uint8;
* :func:`to_input`: RGB -> ``(1, 3, h, w)`` float32, scaled to [0, 1] and normalised
  (resized to the network's input size when it has one);
* :func:`to_labels`: logits ``(1, K, h, w)`` -> ``(H, W)`` uint8 ids at the image's size;
* :func:`work_copy` / :func:`upsample_labels`: an image larger than
  :func:`max_work_pixels` runs the network at a downscaled copy and its labels are
  upsampled back (nearest), so a 48-megapixel photo costs what a 2-megapixel one does;
* :func:`colorize`, :func:`overlay`, :func:`legend`, :func:`label_png`: what is shown.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgeseg_runtime.errors import EdgesegError

__all__ = [
    "IMAGE_SUFFIXES",
    "as_rgb",
    "check_size",
    "check_work_size",
    "colorize",
    "label_png",
    "legend",
    "max_side",
    "max_work_pixels",
    "overlay",
    "read_image",
    "resize_bilinear",
    "to_input",
    "to_labels",
    "upsample_labels",
    "with_legend",
    "work_copy",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# 16-bit and float modes: converting them to 8-bit RGB silently clips or rescales.
_REFUSED_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


#: The largest image decoded by default: Pillow's own guard against decompression bombs.
MAX_IMAGE_PIXELS = 89_478_485


def _env_pixels(name: str, default: int) -> int:
    """A limit in pixels from the environment variable ``name``, else ``default``.

    Raises:
        EdgesegError: the variable is set but not a positive whole number.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.strip().isdigit() else 0
    if value <= 0:
        raise EdgesegError(f"{name}={raw!r}: expected a positive whole number of pixels")
    return value


def max_image_pixels() -> int:
    """The largest image edgeseg decodes, in pixels: :data:`MAX_IMAGE_PIXELS` or the
    environment's ``EDGESEG_MAX_IMAGE_PIXELS``.

    Raises:
        EdgesegError: the variable is not a positive whole number.
    """
    return _env_pixels("EDGESEG_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS)


def open_bounded(path: Path, what: str = "image") -> Image.Image:
    """Decode an image file, after refusing from its header alone one over
    :func:`max_image_pixels` (Pillow decodes up to that limit without its own warning).

    Raises:
        EdgesegError: over the limit (the message names the file, its size and the
            variable that raises the limit).
        OSError, ValueError: Pillow cannot read it.
    """
    limit = max_image_pixels()
    with warnings.catch_warnings():
        # The limit is checked here, in one line; Pillow's warning would add a second.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            img = Image.open(path)
            if img.width * img.height > limit:
                img.close()
                raise EdgesegError(
                    f"{what} {path} has {img.height}x{img.width} (HxW) pixels, more than "
                    f"the {limit:,} edgeseg reads (set EDGESEG_MAX_IMAGE_PIXELS to raise it)"
                )
            img.load()
            return img
        finally:
            Image.MAX_IMAGE_PIXELS = old


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB ``(H, W, 3)`` uint8 (8-bit grey, palette and RGBA converted).

    Raises:
        EdgesegError: missing, unreadable, 16-bit/float, or not one or three colour
            channels (plus alpha) once decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"image not found: {p}")
    try:
        with open_bounded(p) as img:
            if img.mode in _REFUSED_MODES:
                raise EdgesegError(
                    f"image {p} has mode {img.mode} (16-bit or float); convert it to 8-bit RGB"
                )
            bands = len(img.getbands())
            if img.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
                raise EdgesegError(
                    f"image {p} has {bands} channel(s) in mode {img.mode}; expected grey or RGB"
                )
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except EdgesegError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise EdgesegError(f"cannot read image {p}: {e}") from None


def as_rgb(image: Any) -> np.ndarray:
    """A path, PIL image or array -> contiguous RGB ``(H, W, 3)`` uint8.

    Arrays may be ``(H, W)`` grey (replicated, as the datasets do), ``(H, W, 3)`` or
    ``(H, W, 4)`` (alpha dropped).

    Raises:
        EdgesegError: another shape, a dtype other than uint8, a 16-bit or float PIL
            image (converting it would clip or rescale), or an empty image.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        if image.mode in _REFUSED_MODES:
            raise EdgesegError(
                f"expected an 8-bit image, got PIL mode {image.mode} (16-bit or float); "
                "convert it to 8-bit RGB"
            )
        if image.width == 0 or image.height == 0:
            raise EdgesegError(f"expected an image, got an empty {image.width}x{image.height} one")
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise EdgesegError(
            f"expected an (H, W, 3) RGB image, got shape {arr.shape} "
            f"({arr.shape[2] if arr.ndim == 3 else arr.ndim} channel(s))"
        )
    if arr.dtype != np.uint8:
        raise EdgesegError(f"expected a uint8 image, got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EdgesegError(f"expected an image, got an empty array of shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


#: The largest side a network runs at (the CLI's ``--size`` bound).
MAX_SIDE = 8192


def max_side() -> int:
    """The longest image side a size argument may ask for: :data:`MAX_SIDE` pixels, or
    the environment's ``EDGESEG_MAX_SIZE`` (a 20000x20000 input would need gigabytes per
    activation before any layer could refuse it).

    Raises:
        EdgesegError: the variable is not a positive whole number.
    """
    return _env_pixels("EDGESEG_MAX_SIZE", MAX_SIDE)


def check_size(size: Any, what: str = "input_size") -> tuple[int, int]:
    """``size`` as ``(H, W)`` with whole sides in 1..:func:`max_side`, else one line."""
    try:
        ok = len(size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size
        )
    except TypeError:
        ok = False
    if not ok or not all(0 < v <= max_side() for v in size):
        raise EdgesegError(
            f"{what} {size!r}: expected (H, W) whole numbers in 1..{max_side()} "
            "(EDGESEG_MAX_SIZE raises the limit)"
        )
    return int(size[0]), int(size[1])


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel bilinear resize along one axis (the
    sampling of ``torch.nn.functional.interpolate(align_corners=False)``)."""
    # float32 arithmetic, as PyTorch's CPU kernel does it (equal to float32 rounding).
    scale = np.float32(n_in / n_out)
    half = np.float32(0.5)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + half) * scale - half, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0.astype(np.float32)).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize ``(..., H, W)`` float32 to ``(..., h, w)``, bilinear with half-pixel centres."""
    h, w = int(size[0]), int(size[1])
    if x.shape[-2:] == (h, w):
        return x
    y0, y1, wy = _axis_weights(x.shape[-2], h)
    x0, x1, wx = _axis_weights(x.shape[-1], w)
    rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]  # (..., h, W)
    return (rows[..., x0] * (1 - wx) + rows[..., x1] * wx).astype(np.float32)


def to_input(
    rgb: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    size: Sequence[int] | None = None,
    layout: str = "NCHW",
) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 -> the network's input: ``(1, 3, h, w)`` float32 (``NHWC``:
    ``(1, h, w, 3)``), scaled to [0, 1], normalised by ``mean``/``std`` and, with
    ``size``, resized to ``(h, w)``."""
    x = rgb.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[
        :, None, None
    ]
    x = x[None]
    if size is not None:
        x = resize_bilinear(x, size)
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_labels(logits: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Logits ``(1, K, h, w)`` (or ``(K, h, w)``) -> class ids ``(H, W)`` uint8 at ``size``:
    the logits are resized first (bilinear), then the arg-max taken, as in training."""
    x = np.asarray(logits, dtype=np.float32)
    x = x[0] if x.ndim == 4 else x
    x = resize_bilinear(x, size)
    return x.argmax(0).astype(np.uint8)


def colorize(
    labels: np.ndarray,
    palette: Iterable[Iterable[int]],
    void_color: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` uint8 colours; ids past the palette: void_color."""
    pal = np.asarray(list(palette), dtype=np.uint8).reshape(-1, 3)
    lut = np.tile(np.asarray(void_color, dtype=np.uint8), (256, 1))
    lut[: len(pal)] = pal
    return lut[np.clip(labels, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour label map over an RGB image: ``(1 - alpha) * image + alpha * colors``.

    Blended in bands of rows, so a 48-megapixel photo needs no full-size float copies."""
    out = np.empty_like(image, dtype=np.uint8)
    step = max(1, (1 << 20) // max(1, image.shape[1]))  # about a megapixel per band
    for y in range(0, image.shape[0], step):
        band = image[y : y + step].astype(np.float32) * (1.0 - alpha)
        band += colors[y : y + step].astype(np.float32) * alpha
        out[y : y + step] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
    return out


#: Default of :func:`max_work_pixels`: about 1630x1225.
MAX_WORK_PIXELS = 2_000_000


def max_work_pixels() -> int:
    """The most pixels a segmenter feeds its network: larger images are downscaled first
    (``EDGESEG_MAX_WORK_PIXELS`` changes it).

    Raises:
        EdgesegError: the variable is not a positive whole number.
    """
    return _env_pixels("EDGESEG_MAX_WORK_PIXELS", MAX_WORK_PIXELS)


def check_work_size(size: Any, what: str = "input_size") -> tuple[int, int]:
    """:func:`check_size`, and at most :func:`max_work_pixels` pixels: the size a
    segmenter runs its network at (a larger one would take many GB for one image).

    Raises:
        EdgesegError: one line naming ``what``.
    """
    h, w = check_size(size, what)
    if h * w > (limit := max_work_pixels()):
        raise EdgesegError(
            f"{what} {h}x{w}: {h * w:,} pixels, more than the {limit:,} a segmenter runs its "
            "network at (set EDGESEG_MAX_WORK_PIXELS to raise it)"
        )
    return h, w


def work_copy(rgb: np.ndarray, limit: int | None = None) -> np.ndarray:
    """``rgb`` itself, or for an image of more than ``limit`` pixels (default
    :func:`max_work_pixels`) a copy downscaled to fit, the aspect kept (uint8, so a huge
    photo is never converted to floats at full size)."""
    h, w = rgb.shape[:2]
    limit = limit or max_work_pixels()
    if h * w <= limit:
        return rgb
    s = (limit / (h * w)) ** 0.5
    size = (max(1, int(w * s)), max(1, int(h * s)))  # PIL: (W, H)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def upsample_labels(labels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Class ids ``(h, w)`` uint8 -> ``(H, W)`` at ``size``, nearest neighbour."""
    if tuple(labels.shape) == tuple(size):
        return labels
    img = Image.fromarray(labels.astype(np.uint8), mode="L")
    return np.asarray(
        img.resize((int(size[1]), int(size[0])), Image.Resampling.NEAREST), dtype=np.uint8
    )


def legend(classes: Sequence[str], palette: Iterable[Iterable[int]], width: int) -> np.ndarray:
    """A colour key ``(h, width, 3)`` uint8: a swatch and the name of every class, in rows
    that fit ``width`` (drawn with Pillow's built-in font, so it needs no font files)."""
    pal = [tuple(int(v) for v in c) for c in palette]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sw, pad = 12, 6
    cells = [
        (
            name,
            pal[i] if i < len(pal) else (0, 0, 0),
            sw + 4 + int(probe.textlength(name, font=font)) + 2 * pad,
        )
        for i, name in enumerate(classes)
    ]
    rows: list[list[tuple[str, tuple[int, ...], int]]] = [[]]
    used = 0
    for cell in cells:
        if rows[-1] and used + cell[2] > width:
            rows.append([])
            used = 0
        rows[-1].append(cell)
        used += cell[2]
    line = sw + 2 * pad // 2 + 2
    img = Image.new("RGB", (width, line * len(rows) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        x, y = pad, pad // 2 + r * line
        for name, colour, cw in row:
            draw.rectangle([x, y, x + sw, y + sw], fill=colour, outline=(0, 0, 0))
            draw.text((x + sw + 4, y), name, fill=(0, 0, 0), font=font)
            x += cw
    return np.asarray(img, dtype=np.uint8)


def with_legend(
    image: np.ndarray, classes: Sequence[str], palette: Iterable[Iterable[int]]
) -> np.ndarray:
    """``image`` ``(H, W, 3)`` with the :func:`legend` of its classes below it."""
    key = legend(classes, palette, image.shape[1])
    return np.concatenate([image, key], axis=0)


def label_png(labels: np.ndarray, palette: Iterable[Iterable[int]] | None = None) -> bytes:
    """PNG bytes of ``(H, W)`` uint8 ids; with ``palette`` attached (mode P), viewers show
    colours while the pixel values stay the class ids."""
    img = Image.fromarray(labels)
    if palette is not None:
        flat = [int(v) for c in palette for v in c]
        img.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def rgb_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
