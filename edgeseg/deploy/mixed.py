"""Mixed precision: which parts of a network lose accuracy in int8, and an int8 file that
keeps the fewest of them in fp32 to stay within an mIoU budget.

int8 is all or nothing in most tools: a network whose int8 file loses two points is
deployed in fp32 whole, although a few layers cost the loss. Here each part of the
network (a module: an encoder stage, a decoder block; :mod:`edgeseg.deploy.scopes`) is
measured on labelled images in two ways (the way NNCF's and AIMET's sensitivity analyses
do):

- *alone int8*: only this part quantized, the rest fp32. Its loss against fp32 is what
  this part costs.
- *alone fp32*: every other part quantized. Its gain over the all-int8 file is what
  keeping this part in fp32 buys back.

:func:`mixed_precision` then keeps parts in fp32, most rewarding first, until the file is
within the budget. Every variant is one ONNX Runtime QDQ file (ORT's static quantizer,
one calibration shared by all variants), scored with ONNX Runtime; the same module list
is what NNCF's ``ignored_scope`` receives for OpenVINO.

What a module kept in fp32 protects is the tensors inside it and at its edges: ONNX
Runtime quantizes a conv's weights itself when its input comes from a dequantize and its
output goes to a quantize (its ``WeightBiasQuantization`` optimisation), so a single conv
between two int8 neighbours runs int8 anyway. Each variant's ``QuantReport`` counts the
layers that really run in fp32, read from the optimised graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime.files import publish

from edgeseg.deploy.quantize import quantize_onnx
from edgeseg.deploy.scopes import module_groups, nodes_in_modules
from edgeseg.metrics import confusion_matrix, mean_iou
from edgeseg.utils import work_folder

__all__ = [
    "SENSITIVITY_IMAGES",
    "MixedResult",
    "PartSensitivity",
    "Scorer",
    "Sensitivity",
    "mixed_model_onnx",
    "mixed_precision",
    "sensitivity",
]

log = logging.getLogger(__name__)

#: Images the sensitivity of each part is measured on (ranking only: the mixed file is
#: chosen on all the images), evenly spaced over the split: a search costs two scorings
#: per part.
SENSITIVITY_IMAGES = 32


@dataclass
class Scorer:
    """mIoU of ONNX files on fixed labelled images (ONNX Runtime, CPU)."""

    images: torch.Tensor  # (N, C, H, W) normalised
    labels: np.ndarray  # (N, H, W) class ids
    num_classes: int
    ignore_index: int | None = None
    threads: int | None = None

    def subset(self, n: int) -> Scorer:
        """At most ``n`` of the images, evenly spaced (the same scorer if it has fewer)."""
        if len(self.images) <= n:
            return self
        idx = np.linspace(0, len(self.images) - 1, num=n).round().astype(int)
        return Scorer(
            self.images[idx], self.labels[idx], self.num_classes, self.ignore_index, self.threads
        )

    def __call__(self, path: str | os.PathLike[str]) -> float:
        """The mIoU of ``path``'s arg-max predictions on the images."""
        from edgeseg.deploy.export import onnx_session

        sess = onnx_session(path, self.threads)
        name = sess.get_inputs()[0].name
        cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        for x, y in zip(self.images, self.labels, strict=True):
            logits = sess.run(None, {name: x[None].numpy().astype(np.float32)})[0]
            cm += confusion_matrix(logits[0].argmax(0), y, self.num_classes, self.ignore_index)
        return mean_iou(cm)


@dataclass
class PartSensitivity:
    """How much one part of the network cares about int8."""

    module: str  # dotted module path, e.g. "encoder.stages.6"
    layers: int  # weight layers in it
    int8_alone: float  # mIoU with only this part in int8
    fp32_alone: float  # mIoU with only this part in fp32

    def cost(self, fp32: float) -> float:
        """mIoU lost by quantizing this part alone."""
        return fp32 - self.int8_alone


@dataclass
class Sensitivity:
    """Per-part int8 sensitivity of a network on a labelled split."""

    fp32_miou: float  # the fp32 file
    int8_miou: float  # every part in int8
    parts: list[PartSensitivity] = field(default_factory=list)  # in graph order
    images: int = 0  # labelled images scored

    def ranked(self) -> list[PartSensitivity]:
        """Parts, most sensitive first: by what keeping them in fp32 buys back plus what
        quantizing them alone costs. Both count because the tensor *between* two parts is
        quantized when either of them is: an outlier there makes each part alone cost
        everything and each alone in fp32 buy nothing, until both are kept."""
        return sorted(
            self.parts,
            key=lambda p: -(p.fp32_alone - self.int8_miou) - (self.fp32_miou - p.int8_alone),
        )

    def table(self) -> str:
        """A text table, most sensitive first, in mIoU points."""
        rows = [f"{'module':<28} {'layers':>6} {'int8 alone':>11} {'fp32 alone':>11}"]
        for p in self.ranked():
            rows.append(
                f"{p.module:<28} {p.layers:>6} {100 * (p.int8_alone - self.fp32_miou):>+11.2f}"
                f" {100 * (p.fp32_alone - self.int8_miou):>+11.2f}"
            )
        rows.append(
            f"(points against fp32 {100 * self.fp32_miou:.2f} / all-int8 "
            f"{100 * self.int8_miou:.2f}; {self.images} images)"
        )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sensitivity:
        """Inverse of :meth:`to_dict`."""
        parts = [PartSensitivity(**p) for p in d.get("parts", [])]
        return cls(d["fp32_miou"], d["int8_miou"], parts, d.get("images", 0))


@dataclass
class MixedResult:
    """What :func:`mixed_precision` chose."""

    kept_fp32: list[str]  # modules left in fp32, in the order they were added
    miou: float  # the chosen file's mIoU on the scoring images
    fp32_miou: float
    int8_miou: float  # every part in int8
    budget: float  # mIoU that could be lost
    met: bool  # the chosen file is within the budget
    steps: list[dict[str, Any]] = field(default_factory=list)  # [{kept_fp32, miou}] tried
    sensitivity: Sensitivity | None = None  # measured only when all-int8 missed the budget
    quantization: dict[str, Any] = field(default_factory=dict)  # the file's QuantReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class _Variants:
    """int8 files of one fp32 file, each with some modules kept fp32, one calibration."""

    def __init__(
        self, fp32: Path, calib: list[torch.Tensor], work: Path, score: Scorer, prefix: str = ""
    ) -> None:
        self.fp32, self.calib, self.work, self.score = fp32, calib, work, score
        self.prefix = prefix
        self.cache = work / "calibration.json"
        self.reports: dict[Path, dict[str, Any]] = {}  # file -> QuantReport.to_dict()
        self._n = 0

    def make(self, keep: Sequence[str]) -> tuple[Path, float]:
        """Quantize with ``keep`` in fp32 into a fresh file; its path and mIoU."""
        self._n += 1
        out = self.work / f"{self.prefix}variant-{self._n}.onnx"
        nodes = nodes_in_modules(self.fp32, keep)
        report = quantize_onnx(
            self.fp32,
            out,
            self.calib,
            keep_fp32=nodes,
            calibration_cache=self.cache,
            require_int8=False,
        )
        self.reports[out] = report.to_dict()
        return out, self.score(out)


def sensitivity(
    fp32_path: str | os.PathLike[str],
    calib: list[torch.Tensor],
    score: Scorer,
    *,
    depth: int | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> Sensitivity:
    """Measure each part of ``fp32_path`` alone in int8 and alone in fp32.

    Args:
        fp32_path: an fp32 export (for the ORT route: of :func:`edgeseg.deploy.quantize.
            int8_graph`'s network).
        calib: calibration images, normalised ``(C, H, W)``.
        score: the labelled images and the mIoU rule.
        depth: module depth of a part (:func:`edgeseg.deploy.scopes.module_groups`;
            ``None``: about eight parts).
        workdir: where the variant files go (default: a temporary folder).

    Returns:
        The fp32 and all-int8 mIoU and, per part, the two measurements. Costs
        ``2 * parts + 2`` quantizations and scorings.
    """
    with work_folder(workdir, "edgeseg-sensitivity-") as work:
        return _sensitivity(_Variants(Path(fp32_path), calib, work, score), depth)


def _sensitivity(v: _Variants, depth: int | None) -> Sensitivity:
    groups = module_groups(v.fp32, depth)
    fp32 = v.score(v.fp32)
    t0 = time.perf_counter()
    int8 = v.make(())[1]
    _announce(time.perf_counter() - t0, 2 * len(groups))
    log.info("sensitivity: fp32 %.4f, int8 %.4f; %d parts", fp32, int8, len(groups))
    parts = []
    for mod, n in groups.items():
        others = [g for g in groups if g != mod]
        parts.append(PartSensitivity(mod, n, v.make(others)[1], v.make([mod])[1]))
        log.info(
            "sensitivity %s: int8 alone %.4f, fp32 alone %.4f",
            mod,
            parts[-1].int8_alone,
            parts[-1].fp32_alone,
        )
    return Sensitivity(fp32, int8, parts, len(v.score.images))


def _announce(one_s: float, n: int) -> None:
    """State how long measuring ``n`` more variants takes, from the first one's time."""
    from edgeseg.cpu import cpu_name
    from edgeseg.utils import finish_time, format_duration

    left = one_s * n
    log.warning(
        f"planned: int8 sensitivity, {n} more quantized variants on {cpu_name()}, "
        f"about {format_duration(left)}, until about {finish_time(left)}"
    )


def mixed_precision(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib: list[torch.Tensor],
    score: Scorer,
    budget: float,
    *,
    depth: int | None = None,
) -> MixedResult:
    """The int8 file of ``fp32_path`` within ``budget`` mIoU of fp32, with the fewest, most
    sensitive parts kept in fp32; written to ``out_path``.

    All-int8 is tried first; only when it loses more than ``budget`` is the sensitivity
    measured, then parts are kept in fp32 one at a time in :meth:`Sensitivity.ranked`
    order until the file is within the budget. When no mix is (every part fp32 still
    misses it, which calibration noise alone can cause), the all-int8 file is written and
    ``met`` is False: the caller decides (bench and bundles then prefer fp32).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".mixed-") as tmp:
        v = _Variants(Path(fp32_path), calib, Path(tmp), score)
        fp32 = score(v.fp32)
        path, int8 = v.make(())
        steps = [{"kept_fp32": [], "miou": int8}]
        best = ([], int8, path)
        sens = None
        if int8 < fp32 - budget:  # rank the parts on a subset, choose on all images
            sub = _Variants(v.fp32, calib, v.work, score.subset(SENSITIVITY_IMAGES), "rank-")
            sens = _sensitivity(sub, depth)
            best = _search(v, sens, fp32 - budget, steps) or best
        report = v.reports[best[2]]
        publish(best[2], out)
    met = best[1] >= fp32 - budget
    log.info(
        "mixed precision: %d modules kept fp32, mIoU %.4f (fp32 %.4f, int8 %.4f)%s",
        len(best[0]),
        best[1],
        fp32,
        int8,
        "" if met else ": budget not met",
    )
    return MixedResult(list(best[0]), best[1], fp32, int8, budget, met, steps, sens, report)


def _search(
    v: _Variants, sens: Sensitivity, floor: float, steps: list[dict[str, Any]]
) -> tuple[list[str], float, Path] | None:
    """Keep ranked parts in fp32, one more each step, until the mIoU reaches ``floor``."""
    keep: list[str] = []
    for part in sens.ranked():
        keep.append(part.module)
        path, miou = v.make(keep)
        steps.append({"kept_fp32": list(keep), "miou": miou})
        if miou >= floor:
            return keep, miou, path
    return None


def mixed_model_onnx(
    model: torch.nn.Module,
    out_path: str | os.PathLike[str],
    calib: list[torch.Tensor],
    input_size: tuple[int, int],
    score: Scorer,
    budget: float,
    *,
    metadata: dict[str, Any] | None = None,
) -> MixedResult:
    """:func:`mixed_precision` of ``model``'s int8 graph (as
    :func:`edgeseg.deploy.quantize.quantize_model_onnx` exports it)."""
    from edgeseg.deploy.export import export_onnx
    from edgeseg.deploy.quantize import int8_graph

    graph, n = int8_graph(model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".fp32-") as tmp:
        fp32 = Path(tmp) / "fp32-subpixel.onnx"
        export_onnx(graph, fp32, input_size=input_size, metadata=metadata)
        res = mixed_precision(fp32, out, calib, score, budget)
    res.quantization["subpixel"] = n
    return res
