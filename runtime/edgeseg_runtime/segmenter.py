"""The torch-free segmenter: an ONNX file or bundle in, label maps out.

>>> seg = Segmenter("bundle/")                     # doctest: +SKIP
>>> labels = seg("road.png")                       # (H, W) uint8 class ids
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg_runtime.backends import make_runner, onnx_props
from edgeseg_runtime.bundle import read_bundle
from edgeseg_runtime.card import ModelCard
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.processing import (
    as_rgb,
    check_work_size,
    colorize,
    overlay,
    resize_bilinear,
    to_input,
    to_labels,
    upsample_labels,
    work_copy,
)

__all__ = ["Segmenter", "SegmenterBase", "check_graph", "load_card"]


def load_card(model: str | Path, card: ModelCard | None = None) -> tuple[Path, ModelCard]:
    """``(ONNX file, card)`` of a bundle folder or an ONNX file; ``card`` is used for a
    file that carries no edgeseg metadata (and overrides nothing else).

    Raises:
        EdgesegError: a corrupt bundle, an unreadable file, or a file without metadata
            and no ``card``.
    """
    p = Path(model)
    if p.is_dir():
        return read_bundle(p)
    if p.suffix == ".tflite":
        from edgeseg_runtime.litert import tflite_props

        props = tflite_props(p)
    else:
        props = onnx_props(p)
    found = ModelCard.from_onnx_metadata(props, str(p))
    if found is None and card is None:
        raise EdgesegError(
            f"{p} carries no edgeseg metadata: give its classes (--classes a,b,c, and "
            "--mean/--std if it was not trained on ImageNet-normalised input)"
        )
    return p, (found or card)  # type: ignore[return-value]


def check_graph(path: Path, card: ModelCard, inp: list[Any], out: list[Any]) -> None:
    """Refuse a card that does not describe its graph (one line): a rank-4 input with 3
    channels on the card's layout's channel axis; rank-4 logits with one channel per class
    of the card, or a rank-3 label map.

    Args:
        path: the model file, named in the error.
        card: what the card says.
        inp: the graph input's shape (ints, or names for dynamic axes); empty: unknown.
        out: the graph output's shape, likewise.

    Raises:
        EdgesegError: the first mismatch.
    """
    if inp and len(inp) != 4:
        raise EdgesegError(f"{path}: the graph's input has rank {len(inp)}, not 4 (N, C, H, W)")
    axis, other = (3, 1) if card.layout == "NHWC" else (1, 3)
    channels = inp[axis] if inp else None
    if isinstance(channels, int) and channels != 3:
        raise EdgesegError(
            f"{path}: the network takes {channels} input channels; edgeseg segmenters feed RGB (3)"
        )
    if inp and not isinstance(channels, int) and inp[other] == 3:
        raise EdgesegError(
            f"{path}: its card says layout {card.layout}, but the graph's input "
            f"{tuple(inp)} has its 3 channels on axis {other}"
        )
    if out and len(out) not in (3, 4):
        raise EdgesegError(
            f"{path}: the graph's output has rank {len(out)}, not 4 (logits) or 3 (labels)"
        )
    k = out[1] if len(out) == 4 else None
    if isinstance(k, int) and k != len(card.classes):
        raise EdgesegError(
            f"{path}: its card names {len(card.classes)} classes but the graph gives {k} "
            "logit channels"
        )


class SegmenterBase:
    """What every segmenter does with its network's logits; a subclass gives
    :meth:`_forward` (RGB ``(H, W, 3)`` uint8 -> logits ``(1, K, h, w)`` float32, or the
    ``(1, h, w)`` uint8 labels of a graph exported with a label output) and
    :attr:`palette`. ``edgeseg.Segmenter`` (PyTorch) and :class:`Segmenter` share it."""

    palette: tuple[tuple[int, int, int], ...]

    def _forward(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits(self, image: Any) -> np.ndarray:
        """Logits ``(K, H, W)`` float32 at the image's size.

        Raises:
            EdgesegError: the network outputs labels (exported with ``--output labels``).
        """
        rgb = as_rgb(image)
        out = np.asarray(self._forward(rgb))
        if out.ndim == 3:
            raise EdgesegError("this network outputs class labels, not logits")
        return resize_bilinear(out[0], rgb.shape[:2])

    def __call__(self, image: Any) -> np.ndarray:
        """Class ids ``(H, W)`` uint8 of an RGB image (array, PIL image or path).

        An image larger than :func:`~edgeseg_runtime.processing.max_work_pixels` is
        segmented at a downscaled copy and its labels upsampled back (nearest): memory
        stays bounded whatever the photo's size."""
        rgb = as_rgb(image)
        small = work_copy(rgb)
        out = np.asarray(self._forward(small))
        if out.ndim == 3:  # the graph's own labels, at the size the network ran
            labels = upsample_labels(out[0].astype(np.uint8), small.shape[:2])
        else:
            labels = to_labels(out, small.shape[:2])
        return labels if small is rgb else upsample_labels(labels, rgb.shape[:2])

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Class ids -> RGB colours of the network's palette."""
        return colorize(labels, self.palette)

    def overlay(
        self, image: Any, labels: np.ndarray | None = None, alpha: float = 0.5
    ) -> np.ndarray:
        """The image with its segmentation blended over it (computed if not given)."""
        rgb = as_rgb(image)
        labels = self(rgb) if labels is None else labels
        return overlay(rgb, self.colorize(labels), alpha)


class Segmenter(SegmenterBase):
    """A network loaded once, ready to segment images, with PyTorch nowhere.

    Args:
        model: a bundle folder or an ONNX file (edgeseg's carry their classes,
            palette and normalisation).
        backend: ``ort`` (ONNX Runtime), ``openvino``, ``openvino-bf16`` or, for a
            ``.tflite`` file, ``litert``; default: ``litert`` for a ``.tflite`` file,
            else ``ort``.
        threads: intra-op threads (default: the engine's).
        input_size: run the network at ``(H, W)``, logits resized back to each image's
            size; default: the card's size if the network needs one, else each image's.
        card: classes and normalisation for an ONNX file without edgeseg metadata.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        backend: str | None = None,
        threads: int | None = None,
        input_size: tuple[int, int] | None = None,
        card: ModelCard | None = None,
    ) -> None:
        if input_size is not None:
            input_size = check_work_size(input_size)
        self.path, self.card = load_card(model, card)
        backend = backend or ("litert" if self.path.suffix == ".tflite" else "ort")
        self.backend = backend
        self._run = make_runner(backend, self.path, threads)
        shape = list(getattr(self._run, "input_shape", []))
        check_graph(self.path, self.card, shape, list(getattr(self._run, "output_shape", [])))
        fixed = shape[1:3] if self.card.layout == "NHWC" else shape[2:4]
        static = (
            tuple(fixed) if len(fixed) == 2 and all(isinstance(v, int) for v in fixed) else None
        )
        self.input_size = input_size or static  # None: each image at its own size
        self.last_ms = 0.0  # the network's time on the last image (pre/post excluded)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, index = id."""
        return self.card.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:  # type: ignore[override]
        """An RGB colour per class."""
        return self.card.palette

    def _forward(self, rgb: np.ndarray) -> np.ndarray:
        x = to_input(rgb, self.card.mean, self.card.std, self.input_size, self.card.layout)
        t = time.perf_counter()
        out = self._run(x)  # (1, K, h, w) logits, or (1, h, w) labels
        self.last_ms = (time.perf_counter() - t) * 1000
        return out
