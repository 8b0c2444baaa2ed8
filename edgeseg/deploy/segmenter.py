"""Segment images with a trained checkpoint: label maps, colour maps and overlays.

>>> seg = Segmenter("runs/camvid/best.pt")          # doctest: +SKIP
>>> labels = seg(np.asarray(Image.open("road.png")))  # (H, W) uint8 class ids
>>> Image.fromarray(seg.overlay(image, labels)).save("road_overlay.png")
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime.backends import onnx_props
from edgeseg_runtime.card import ModelCard
from edgeseg_runtime.files import (
    check_alpha,
    check_predictions_free,
    collect_images,
    write_prediction,
)
from edgeseg_runtime.processing import (
    IMAGE_SUFFIXES,
    as_rgb,
    check_work_size,
    colorize,
    overlay,
    read_image,
    to_input,
)
from edgeseg_runtime.segmenter import SegmenterBase, check_graph

from edgeseg.data import DatasetInfo
from edgeseg.defaults import CALIB_IMAGES, INPUT_SIZE
from edgeseg.engine.checkpoint import load_model
from edgeseg.errors import DataError, EdgesegError
from edgeseg.utils import thread_count

__all__ = [
    "IMAGE_SUFFIXES",
    "RAY_EXTRA",
    "Segmenter",
    "colorize",
    "overlay",
    "predict_on_ray",
    "predict_paths",
]

#: The pip extra of ``--ray`` in this package (the runtime's is ``edgeseg-runtime[ray]``).
RAY_EXTRA = "pip install 'edgeseg[ray]'"

log = logging.getLogger(__name__)

# The pre- and post-processing is edgeseg_runtime's (numpy, no torch): the same code runs
# here and on a device, so both give the same labels.
_as_rgb = as_rgb


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _onnx_info(path: str | Path) -> tuple[dict[str, Any], DatasetInfo, ModelCard]:
    """``(checkpoint-like dict, dataset info, card)`` of an edgeseg ONNX file, its card
    checked by the runtime's one reader (finite normalisation, colours in range, <= 256
    classes).

    Raises:
        EdgesegError: the file is not an edgeseg export, or its metadata is malformed.
    """
    from edgeseg.deploy.export import onnx_metadata

    props = onnx_props(path)  # read once: edgeseg's fields, then the runtime's card
    meta = onnx_metadata(path, props)
    card = ModelCard.from_onnx_metadata(props, str(path))
    if card is None:  # onnx_metadata has refused a file without edgeseg's metadata
        raise EdgesegError(f"{path}: no edgeseg metadata")
    info = DatasetInfo(
        name=str(meta.get("dataset", "custom")),
        classes=card.classes,
        palette=card.palette,
        ignore_index=int(meta.get("ignore_index", len(card.classes))),
        mean=card.mean,
        std=card.std,
    )
    ckpt = {"model": meta["model"], "input_size": None, "dataset": info.to_dict()}
    return ckpt, info, card


class Segmenter(SegmenterBase):
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
            (``eager`` when ``channels_last=False``; ``ort`` for an ONNX file).
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

        if input_size is not None:
            input_size = check_work_size(input_size)
        if threads is not None:
            threads = thread_count(threads, "threads")
        if backend is None and str(checkpoint).endswith(".onnx"):
            backend = "ort"  # a file runs on an ONNX engine
        backend = backend or ("channels_last" if channels_last else "eager")
        self.backend = backend
        self.threads = threads
        self.model = None
        onnx_path = None
        if str(checkpoint).endswith(".onnx"):
            self.checkpoint, self.info, card = _onnx_info(checkpoint)
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
        if onnx_path is not None and (engine := getattr(self._run, "engine", None)):
            inp, out = getattr(engine, "input_shape", []), getattr(engine, "output_shape", [])
            check_graph(Path(onnx_path), card, list(inp), list(out))

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, index = id."""
        return self.info.classes

    @torch.inference_mode()
    def _forward(self, rgb: np.ndarray) -> np.ndarray:
        """The network's logits ``(1, K, h, w)`` for an RGB image (edgeseg_runtime's input)."""
        size = self.input_size if self.input_size != rgb.shape[:2] else None
        x = torch.from_numpy(to_input(rgb, self.info.mean, self.info.std, size))
        with _threads(self.threads):
            y = self._run(x)  # logits, or the labels of a file exported with a label output
            return (y.float() if y.is_floating_point() else y).numpy()

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:  # type: ignore[override]
        """An RGB colour per class."""
        return self.info.palette  # type: ignore[return-value]

    def logits(self, image: Any) -> torch.Tensor:  # type: ignore[override]
        """Logits ``(K, H, W)`` at the image's size."""
        return torch.from_numpy(super().logits(image))


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
    legend: bool = False,
    overwrite: bool = False,
    overlays: bool = True,
) -> list[dict[str, str]]:
    """Segment images and every image in folders; write label PNGs and overlays.

    Writes ``OUT/labels/NAME.png`` (class ids as pixel values, with the palette attached
    so viewers show colours) and ``OUT/overlays/NAME.png`` (with ``legend``: the class
    colour key under it); the same files as ``edgeseg-run predict``. ``backend`` and
    ``calibration`` are :class:`Segmenter`'s. ``inputs`` is one image or folder, or a
    list of them: every file is checked before the network is built once for all.
    Earlier predictions of the same images in ``out_dir`` are replaced only with
    ``overwrite``. Without ``overlays`` only the label maps are written.

    Returns:
        One ``{"image", "labels", "overlay"}`` dict of paths per input image.

    Raises:
        DataError: no input images, or an unreadable one (named).
        EdgesegError: earlier predictions in the way, an opacity outside [0, 1].
    """
    try:  # every input checked before the network is built
        files = collect_images(inputs)
    except EdgesegError as e:
        raise DataError(str(e)) from None
    check_predictions_free(out_dir, files, overwrite)
    alpha = check_alpha(alpha)
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
        try:
            rgb = read_image(f)
        except EdgesegError as e:
            raise DataError(str(e)) from None
        labels = seg(rgb)
        paths = write_prediction(
            out,
            f.stem,
            rgb,
            labels,
            seg.info.classes,
            seg.info.palette,
            alpha=alpha,
            legend=legend,
            overlays=overlays,
        )
        written.append({"image": str(f), **paths})
        log.info("segmented %s", f)
    return written


def predict_on_ray(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    address: str,
    actors: int = 2,
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    backend: str | None = None,
    calibration: str | None = None,
    alpha: float = 0.5,
    legend: bool = False,
    overlays: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`predict_paths` on a Ray cluster: a pool of ``actors`` segmenters of
    ``threads`` threads each (:func:`edgeseg_runtime.scale.ray_predict`); images whose
    label file exists in ``out_dir`` are skipped unless ``overwrite`` (a re-run resumes).

    ``inputs`` may also be ``.txt`` lists and glob patterns. Every node needs edgeseg
    installed and the checkpoint, images and ``out_dir`` at the same paths.

    Returns:
        The summary (also ``OUT/predict_summary.json``) with one row per image in ``rows``.

    Raises:
        EdgesegError: Ray missing (naming the extra), an unreachable address, a bad
            checkpoint or input; all before any image is segmented.
    """
    from functools import partial

    from edgeseg_runtime.scale import ray_predict

    threads = thread_count(threads or 1, "--threads")
    factory = partial(
        Segmenter,
        str(checkpoint),
        threads=threads,
        input_size=input_size,
        backend=backend,
        calibration=calibration,
    )
    factory()  # a bad checkpoint fails here, in one line, before a cluster is joined
    return ray_predict(
        factory,
        inputs,
        out_dir,
        address=address,
        actors=actors,
        threads=threads,
        alpha=check_alpha(alpha),
        legend=legend,
        overlays=overlays,
        overwrite=overwrite,
        extra=RAY_EXTRA,
        progress=progress,
    )
