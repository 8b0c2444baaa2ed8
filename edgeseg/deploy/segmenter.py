"""Segment images with a trained checkpoint: label maps, colour maps and overlays.

>>> seg = Segmenter("runs/camvid/best.pt")          # doctest: +SKIP
>>> labels = seg(np.asarray(Image.open("road.png")))  # (H, W) uint8 class ids
>>> Image.fromarray(seg.overlay(image, labels)).save("road_overlay.png")
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgeseg.data import DatasetInfo, load_image, normalize_image
from edgeseg.defaults import CALIB_IMAGES, INPUT_SIZE
from edgeseg.engine.checkpoint import load_model
from edgeseg.errors import DataError, EdgesegError
from edgeseg.utils import atomic_write_bytes

__all__ = ["IMAGE_SUFFIXES", "Segmenter", "colorize", "overlay", "predict_paths"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
    """Blend a colour label map over an RGB image: ``(1 - alpha) * image + alpha * colors``."""
    out = image.astype(np.float32) * (1.0 - alpha) + colors.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:  # grayscale: replicate, as the datasets do
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise EdgesegError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise EdgesegError(f"expected a uint8 image, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Segmenter:
    """A model loaded once, ready to segment numpy arrays, PIL images or files.

    Args:
        checkpoint: checkpoint file or run directory, or an ONNX file exported by edgeseg
            (its metadata gives the classes and normalisation; ``ort`` backends only).
        threads: intra-op threads for inference (default: torch's / ONNX Runtime's).
        input_size: run the network at HxW and resize the logits back to each image's size
            (default: the image's own size; every edgeseg model accepts any size). The
            compiled backends (``compile``, ``pt2e-int8``) are built for one size: the
            checkpoint's training size, else 360x480, unless this is given.
        channels_last: NHWC inference for the default backend (kept for compatibility).
        backend: one of :data:`edgeseg.measure.bench.BACKENDS`; default ``channels_last``
            (``eager`` when ``channels_last=False``).
        calibration: data root whose ``train`` images calibrate the int8 backends.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        threads: int | None = None,
        input_size: tuple[int, int] | None = None,
        channels_last: bool = True,
        backend: str | None = None,
        calibration: str | None = None,
    ) -> None:
        from edgeseg.deploy.backends import make_runner

        backend = backend or ("channels_last" if channels_last else "eager")
        self.backend = backend
        self.threads = threads
        self.model = None
        onnx_path = None
        if str(checkpoint).endswith(".onnx"):
            from edgeseg.deploy.export import onnx_metadata

            meta = onnx_metadata(checkpoint)
            self.checkpoint: dict[str, Any] = {"model": meta["model"], "input_size": None}
            self.info = DatasetInfo(
                name=str(meta.get("dataset", "custom")),
                classes=tuple(meta["classes"]),
                palette=tuple(tuple(c) for c in meta["palette"]),
                ignore_index=meta["ignore_index"],
                mean=tuple(meta["mean"]),
                std=tuple(meta["std"]),
            )
            self.checkpoint["dataset"] = self.info.to_dict()
            onnx_path = checkpoint
        else:
            self.model, self.checkpoint = load_model(checkpoint)
            self.info = DatasetInfo.from_dict(self.checkpoint["dataset"])
        if backend in ("compile", "pt2e-int8") and input_size is None:
            # Compiled graphs are built for one input size (another one would recompile).
            input_size = tuple(self.checkpoint.get("input_size") or INPUT_SIZE)  # type: ignore
        self.input_size = input_size
        example = torch.zeros(1, 3, *input_size) if input_size else None
        calib = None
        if backend.endswith("int8"):
            from edgeseg.deploy.quantize import calibration_images

            calib = calibration_images(
                self.checkpoint, calibration, "train", CALIB_IMAGES, input_size or INPUT_SIZE
            )
            example = example if example is not None else torch.zeros(1, 3, *calib[0].shape[-2:])
        with _threads(threads):
            self._run = make_runner(
                backend,
                model=self.model,
                onnx_path=onnx_path,
                example=example,
                calibration=calib,
                threads=threads,
            )

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, index = id."""
        return self.info.classes

    @torch.inference_mode()
    def logits(self, image: Any) -> torch.Tensor:
        """Logits ``(K, H, W)`` at the image's size."""
        rgb = _as_rgb(image)
        h, w = rgb.shape[:2]
        x = normalize_image(rgb, self.info.mean, self.info.std)[None]
        if self.input_size is not None and (h, w) != tuple(self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        with _threads(self.threads):
            out = self._run(x).float()
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out[0]

    def __call__(self, image: Any) -> np.ndarray:
        """Class ids ``(H, W)`` uint8 for an RGB image (array, PIL image or path)."""
        return self.logits(image).argmax(0).to(torch.uint8).numpy()

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Class ids -> RGB colours of the checkpoint's palette."""
        return colorize(labels, self.info.palette)

    def overlay(
        self, image: Any, labels: np.ndarray | None = None, alpha: float = 0.5
    ) -> np.ndarray:
        """The image with its segmentation blended over it (computed if not given)."""
        rgb = _as_rgb(image)
        labels = self(rgb) if labels is None else labels
        return overlay(rgb, self.colorize(labels), alpha)


def _png_bytes(arr: np.ndarray, palette: Iterable[Iterable[int]] | None = None) -> bytes:
    import io

    img = Image.fromarray(arr)
    if palette is not None:  # L -> P keeps the ids as pixel values; viewers show colours
        flat = [int(v) for c in palette for v in c]
        img.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def predict_paths(
    checkpoint: str | Path,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    alpha: float = 0.5,
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    backend: str | None = None,
    calibration: str | None = None,
) -> list[dict[str, str]]:
    """Segment images and every image in folders; write label PNGs and overlays.

    Writes ``OUT/labels/NAME.png`` (class ids as pixel values, with the palette attached
    so viewers show colours) and ``OUT/overlays/NAME.png``. ``backend`` and
    ``calibration`` are :class:`Segmenter`'s. ``inputs`` is one image or folder, or a
    list of them: every file is checked before the network is built once for all.

    Returns:
        One ``{"image", "labels", "overlay"}`` dict of paths per input image.

    Raises:
        DataError: no input images, or an unreadable one (named).
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: list[Path] = []
    for item in items:
        src = Path(item)
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src}")
            files += found
        elif src.is_file():
            files.append(src)
        else:
            raise DataError(f"image or folder not found: {src}")
    by_stem: dict[str, Path] = {}
    for f in files:  # outputs are named by stem: two inputs must not write one file
        if f.stem in by_stem and by_stem[f.stem] != f:
            raise DataError(
                f"{by_stem[f.stem]} and {f} would both write {f.stem}.png: rename one, or "
                "predict them into different --out folders"
            )
        by_stem[f.stem] = f
    files = list(dict.fromkeys(files))
    seg = Segmenter(
        checkpoint,
        threads=threads,
        input_size=input_size,
        backend=backend,
        calibration=calibration,
    )
    out = Path(out_dir)
    written = []
    for f in files:
        rgb = load_image(f)
        labels = seg(rgb)
        lbl_path = out / "labels" / f"{f.stem}.png"
        ov_path = out / "overlays" / f"{f.stem}.png"
        atomic_write_bytes(lbl_path, _png_bytes(labels, seg.info.palette))
        atomic_write_bytes(ov_path, _png_bytes(seg.overlay(rgb, labels, alpha)))
        written.append({"image": str(f), "labels": str(lbl_path), "overlay": str(ov_path)})
        log.info("segmented %s", f)
    return written
