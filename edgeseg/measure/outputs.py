"""Which output form pays: an exported file's label forms against its logits, side by side.

A label form (:mod:`edgeseg.deploy.labels`) removes the full-size float logits tensor, and
with it the final upsampling, the copy out of the engine and the host's arg-max; the
reduced forms change labels near class edges. Whether that is faster end to end, and what
it costs in mIoU, depends on the network, the engine and the CPU, so it is measured: each
form is a copy of the file rewritten, scored on the same images by the engine that will
run it, and timed as the torch-free runtime's ``Segmenter`` runs it per image
(normalisation, network, labels), in interleaved rounds.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.defaults import OUTPUTS
from edgeseg.deploy.labels import labels_file
from edgeseg.measure.choice import fastest_within
from edgeseg.measure.timing import time_interleaved
from edgeseg.metrics import confusion_matrix, mean_iou

__all__ = ["OutputRow", "choose_output", "measure_outputs", "score_file"]

log = logging.getLogger(__name__)

#: Forms whose labels equal the logits' arg-max: chosen on speed alone (no data needed).
EXACT = ("logits", "labels")


@dataclass
class OutputRow:
    """One output form of a file, measured."""

    form: str  # what was asked: an entry of OUTPUTS
    applied: str  # what the graph got (a reduced form falls back to ``labels`` without a resize)
    median_ms: float  # end to end per image, the runtime's Segmenter
    miou: float | None  # on the images given; None when none were

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "median_ms": round(self.median_ms, 3),
            "miou": None if self.miou is None else round(self.miou, 5),
        }


def score_file(
    path: str | Path,
    backend: str,
    images: torch.Tensor,
    labels: np.ndarray,
    num_classes: int,
    ignore_index: int,
    threads: int | None = None,
) -> float:
    """mIoU of an ONNX file's labels on ``images`` ``(N, C, H, W)`` (normalised as the
    network expects) against ``labels`` ``(N, H, W)``: its own label output, or its
    logits' arg-max."""
    from edgeseg_runtime.backends import make_runner

    run = make_runner(backend, path, threads)
    preds = []
    for x in images:
        y = run(x[None].numpy())[0]  # (K, H, W) logits or (H, W) labels
        preds.append(y if y.ndim == 2 else y.argmax(0))
    return mean_iou(confusion_matrix(np.stack(preds), labels, num_classes, ignore_index))


def measure_outputs(
    path: str | Path,
    backend: str,
    rgb: np.ndarray,
    *,
    forms: Sequence[str] = OUTPUTS,
    scoring: tuple[torch.Tensor, np.ndarray, int, int] | None = None,
    threads: int | None = None,
    rounds: int = 20,
    card: Any = None,
) -> dict[str, OutputRow]:
    """Every output form of the logits file ``path`` on ``backend``, side by side.

    Args:
        path: an exported edgeseg ONNX file (fp32 or int8) whose output is the logits.
        backend: the runtime engine (``ort``, ``openvino``, ``openvino-bf16``).
        rgb: the image the forms are timed on, ``(H, W, 3)`` uint8.
        forms: the forms to measure (``logits`` is always among them: the reference).
        scoring: ``(images, labels, num_classes, ignore_index)`` to score each form on;
            without it the rows carry no mIoU.
        threads: the engine's intra-op threads.
        rounds: timed rounds, interleaved (the median is kept).
        card: an ``edgeseg_runtime.ModelCard`` for a file without edgeseg metadata.

    Returns:
        ``{form: OutputRow}``, ``logits`` first.
    """
    from edgeseg_runtime import Segmenter

    forms = ["logits", *[f for f in forms if f != "logits"]]
    with tempfile.TemporaryDirectory(prefix="edgeseg-outputs-") as tmp:
        files, applied = {}, {}
        for form in forms:
            files[form] = Path(tmp) / f"{form}.onnx"
            shutil.copyfile(path, files[form])
            applied[form] = form if form == "logits" else labels_file(files[form], form)
        miou = (
            {f: score_file(files[f], backend, *scoring, threads) for f in forms} if scoring else {}
        )
        segs = {
            f: (Segmenter(files[f], backend=backend, threads=threads, card=card), rgb)
            for f in forms
        }
        # One session's spinning threads must not slow the next: settle before each timing.
        times = time_interleaved(segs, warmup=3, repeats=rounds, settle=1)
    return {f: OutputRow(f, applied[f], statistics.median(times[f]), miou.get(f)) for f in forms}


def choose_output(rows: dict[str, OutputRow], reference_miou: float | None, budget: float) -> str:
    """The fastest form whose mIoU is within ``budget`` of ``reference_miou`` (the fp32
    network's); without scores, the fastest exact form (``logits`` or ``labels``)."""
    if reference_miou is None or any(r.miou is None for r in rows.values()):
        exact = {f: r.median_ms for f, r in rows.items() if f in EXACT}
        return fastest_within(exact, {}, None, budget) or "logits"
    ms, miou = {f: r.median_ms for f, r in rows.items()}, {f: r.miou for f, r in rows.items()}
    return fastest_within(ms, miou, reference_miou, budget) or "logits"
