"""``edgeseg bench``: every CPU backend (:mod:`edgeseg.deploy.backends`) side by side, and the
fastest one within an accuracy budget.

:func:`bench` runs each backend in a *fresh process* (so one backend's allocator state,
threads or compiled kernels never help or hurt another), rounds interleaved across
backends, and reports median and p90 latency, throughput, peak memory, size on disk and,
given a data split, each backend's mIoU and its pixel agreement with ``eager``. The worker
side is :func:`run_job` (``python -m edgeseg.measure.bench JOB.json``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.cpu import cpu_name
from edgeseg.data import build_dataset
from edgeseg.data.presets import PRESETS, DatasetInfo, get_preset
from edgeseg.data.transforms import eval_transform
from edgeseg.defaults import (
    ACCURACY_BUDGET,
    BACKENDS,
    CALIB_IMAGES,
    INPUT_SIZE,
    NUM_CLASSES,
    THREADS,
)
from edgeseg.deploy.backends import (
    BF16_BACKENDS,
    LITERT_FILES,
    ONNX_ENGINES,
    TORCH_BACKENDS,
    check_backends,
    make_runner,
    native_bf16,
    onnx_backend_unavailable,
    runner_precision,
)
from edgeseg.deploy.export import checkpoint_metadata, export_onnx, onnx_metadata
from edgeseg.deploy.mixed import Scorer, mixed_model_onnx, mixed_precision
from edgeseg.deploy.pt2e import pt2e_convert
from edgeseg.deploy.quantize import (
    calibration_images,
    quantize_model_onnx,
    quantize_onnx,
    quantize_onnx_nncf,
)
from edgeseg.deploy.scopes import nodes_in_modules
from edgeseg.deploy.tuning import tune_malloc
from edgeseg.engine.checkpoint import build_model, load_model
from edgeseg.errors import EdgesegError
from edgeseg.measure.choice import fastest_within
from edgeseg.measure.counts import count_flops, zip_size
from edgeseg.measure.peak import Peak, measure_peak
from edgeseg.metrics import confusion_matrix, mean_iou
from edgeseg.models import create_model, model_info, register_external
from edgeseg.models.footprint import check_forward
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import (
    VersionedResult,
    atomic_write_json,
    finish_time,
    format_duration,
    parse_size,
    positive_int,
    text_table,
    thread_count,
    work_folder,
)

#: The int8 file each int8 ONNX backend runs, in the bench's work folder.
INT8_FILES = {"ort-int8": "int8.onnx", "openvino-int8": "int8.onnx", "nncf-int8": "int8-nncf.onnx"}

__all__ = [
    "BACKENDS",
    "BENCH_SCHEMA",
    "BenchResult",
    "bench",
    "fastest_within_budget",
    "make_runner",
    "zip_size",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- runners


# --------------------------------------------------------------------------- worker


def _rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _load_model(job: dict[str, Any]) -> nn.Module | None:
    # The ONNX Runtime backends run the exported file: no need to rebuild the network (so
    # they also work for a network this fresh process cannot import).
    if job["kind"] == "onnx" or job["backend"] in ("ort", "ort-int8", *LITERT_FILES):
        return None
    for name, target in (job.get("external") or {}).items():
        # Networks from outside the zoo, registered by their importable factory.

        module, _, attr = target.partition(":")
        try:
            model_info(name)
        except EdgesegError:
            factory = importlib.import_module(module)
            for part in attr.split("."):
                factory = getattr(factory, part)
            register_external(name, factory)
    if job["kind"] == "checkpoint":
        return load_model(job["source"])[0]

    torch.manual_seed(0)
    return create_model(job["source"], num_classes=job["num_classes"]).eval()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One backend in this process: build, time, and (optionally) predict a split.

    ``job`` keys: backend, kind (model|checkpoint|onnx), source, num_classes, size,
    threads, warmup, iterations, workdir (fp32.onnx, int8.onnx, calib.pt inside),
    predict (bool: write predictions of workdir/eval.pt's images to workdir/pred-B.npy).
    """

    torch.set_num_threads(job["threads"])
    tune_malloc()
    rss0 = _rss_bytes()
    work = Path(job["workdir"])
    h, w = job["size"]
    calib = torch.load(work / "calib.pt") if (work / "calib.pt").is_file() else None
    model = _load_model(job)
    in_ch = int(job.get("in_channels", 3))
    x = torch.randn(1, in_ch, h, w, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    run = make_runner(
        job["backend"],
        model=model,
        onnx_path=work / "fp32.onnx",
        int8_path=work / INT8_FILES.get(job["backend"], "int8.onnx"),
        example=x,
        calibration=list(calib) if calib is not None else None,
        threads=job["threads"],
        litert_path=work / LITERT_FILES.get(job["backend"], "model.tflite"),
    )
    build_s = time.perf_counter() - t0
    times = []
    with torch.inference_mode():
        for _ in range(job["warmup"]):
            run(x)
        for _ in range(job["iterations"]):
            t = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - t) * 1e3)
        if job.get("predict"):
            images = torch.load(work / "eval.pt")
            preds = np.stack([_labels(run(im[None])[0]) for im in images])
            np.save(work / f"pred-{job['backend']}.npy", preds)
    return {
        "times_ms": times,
        "build_s": build_s,
        "peak_rss": _rss_bytes(),
        "base_rss": rss0,
        "precision": runner_precision(job["backend"], run),
    }


def _labels(y: torch.Tensor) -> np.ndarray:
    """Class ids ``(H, W)`` uint8 of one output: logits ``(K, H, W)`` arg-maxed, or a
    label map (a file exported with a label output) as it is."""
    return (y.argmax(0) if y.is_floating_point() else y).to(torch.uint8).numpy()


def _die_with_parent() -> None:
    """In the worker, before it starts: be killed when the bench process dies (Linux), so
    that a killed ``bench`` or ``compare`` leaves no worker running."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _spawn(job: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run :func:`run_job` in a fresh Python process; raise EdgesegError with its last line."""
    fd, name = tempfile.mkstemp(dir=work, prefix="job-", suffix=".json")
    os.close(fd)
    job_file, out_file = Path(name), Path(name + ".out")
    try:
        job_file.write_text(json.dumps(job))
        proc = subprocess.run(
            [sys.executable, "-m", "edgeseg.measure.bench", name],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_die_with_parent,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            if proc.returncode < 0:  # killed by a signal: the engine itself crashed
                tail = f"the worker crashed ({signal.Signals(-proc.returncode).name})"
            raise EdgesegError(f"backend {job['backend']} failed: {tail}")
        return json.loads(out_file.read_text())
    finally:  # the worker's files go: a kept artefact folder holds only artefacts
        job_file.unlink(missing_ok=True)
        out_file.unlink(missing_ok=True)


# --------------------------------------------------------------------------- bench


#: Version of :class:`BenchResult`'s fields (``schema``); a result without one is version 1.
BENCH_SCHEMA = "edgeseg.bench/1"

#: The columns of :meth:`BenchResult.table`.
BENCH_COLUMNS = ("backend", "median ms", "p90 ms", "img/s", "x eager", "peak RSS MB", "file MB",
                 "zip MB", "mIoU", "agree %", "precision", "G(FL)OP/s", "% peak")  # fmt: skip


def _mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e6:.1f}"


def _row(name: str, r: dict[str, Any]) -> tuple[str, ...]:
    peak = r.get("peak_fraction")
    return (
        name,
        f"{r['latency_ms']['median']:.1f}",
        f"{r['latency_ms']['p90']:.1f}",
        f"{r['images_per_s']:.2f}",
        f"{r.get('speedup', float('nan')):.2f}",
        _mb(r["peak_rss_bytes"]),
        _mb(r.get("size_bytes")),
        _mb(r.get("zip_bytes")),
        f"{r['miou']:.4f}" if "miou" in r else "-",
        f"{100 * r['pixel_agreement']:.2f}" if "pixel_agreement" in r else "-",
        r.get("precision", "-"),
        f"{r['gops']:.1f}" if "gops" in r else "-",
        f"{100 * peak:.0f}%" if peak is not None else "-",
    )


class BenchResult(VersionedResult):
    """What :func:`bench` returns: the JSON-ready dict (``res["backends"]`` as before),
    typed accessors, and the one :meth:`table` the CLI prints.

    Keys: ``schema``, ``source``, ``size``, ``threads``, ``cpu``, ``ops`` (2 x MACs),
    ``peak``, ``backends`` ``{name: {latency_ms {median, p90}, images_per_s,
    peak_rss_bytes, build_s, size_bytes, zip_bytes, miou, pixel_agreement, speedup,
    precision, gops, peak_fraction}}``, ``quantization``, ``errors`` (why a backend could
    not run), ``best`` and ``best_reason``.
    """

    SCHEMA, KIND = BENCH_SCHEMA, "bench result"

    @property
    def best(self) -> str:
        """The fastest backend within the accuracy budget."""
        return str(self["best"])

    def latency_ms(self, backend: str | None = None) -> float:
        """Median latency of ``backend`` (default: the best one), ms."""
        return float(self["backends"][backend or self.best]["latency_ms"]["median"])

    def table(self) -> str:
        """What ``edgeseg bench`` prints: where it ran, one row per backend, the int8
        files' layers, unavailable backends and the choice."""
        h, w = self["size"]
        lines = [f"{self['source']} at {h}x{w}, {self['threads']} threads, {self['cpu']}"]
        if self.get("peak"):
            peaks = ", ".join(f"{p} {v:.0f}" for p, v in self["peak"]["gops"].items())
            lines.append(f"measured peak G(FL)OP/s here: {peaks} (edgeseg peak)")
        rows = [_row(name, r) for name, r in self["backends"].items()]
        lines.append(text_table(rows, BENCH_COLUMNS))
        for method, q in self.get("quantization", {}).items():
            fp32 = q["fp32_layers"]
            kept = ", ".join(fp32[:6]) + (" ..." if len(fp32) > 6 else "")
            lines.append(
                f"{method}: {q['quantized_layers']} layers int8, {len(fp32)} fp32"
                + (f" ({kept})" if kept else "")
            )
        for name, err in self.get("errors", {}).items():
            lines.append(f"{name}: not available for this model ({err})")
        lines.append(f"best: {self['best']} ({self['best_reason']})")
        return "\n".join(lines)


def bench(
    source: str,
    *,
    size: Any = INPUT_SIZE,
    threads: int = THREADS,
    backends: Sequence[str] | None = None,
    num_classes: int | None = None,
    iterations: int = 10,
    warmup: int = 3,
    repeats: int = 3,
    data: str | None = None,
    split: str = "val",
    eval_images: int | None = None,
    calib_data: str | None = None,
    calib_split: str = "train",
    calib_images: int = CALIB_IMAGES,
    budget_miou: float = ACCURACY_BUDGET,
    mixed_precision: bool = False,
    workdir: str | os.PathLike[str] | None = None,
    timeout: float = 1800.0,
    external: dict[str, str] | None = None,
    peak: bool = True,
) -> BenchResult:
    """Latency, memory, size and accuracy of each backend, each in a fresh process, and
    the share of this CPU's arithmetic peak each one attains.

    Args:
        source: a registered model name (random weights), a checkpoint or run directory,
            or an ``.onnx`` file (only the ``ort`` backends).
        size: input HxW of every backend.
        threads: intra-op threads of every backend.
        backends: comma-separated subset of eager, channels_last, compile, ort, ort-int8,
            openvino, ... (:data:`BACKENDS`); default: every backend that can run the
            source.
        num_classes: K for a model name (default 11); for a checkpoint or ONNX file it
            must match the file's, if given.
        iterations: timed runs per process.
        warmup: untimed runs per process, before the timed ones.
        repeats: processes per backend; rounds alternate the backend order.
        data: data root whose ``split`` scores each backend's mIoU and pixel agreement
            (checkpoints, ONNX files).
        split: the split of ``data`` scored.
        eval_images: score only this many of its images (default: all).
        calib_data: calibration root of the int8 backends (default: ``data``).
        calib_split: the split of ``calib_data`` calibrating.
        calib_images: calibration images.
        budget_miou: the fastest backend losing at most this mIoU is named ``best``.
        mixed_precision: int8 losing more than ``budget_miou`` on ``data`` keeps its most
            sensitive modules in fp32 (:mod:`edgeseg.deploy.mixed`), named in the result.
        workdir: keep the artefacts (fp32/int8 ONNX) here (default: a temporary folder).
        external: ``{name: "module:factory"}`` of networks outside the zoo, registered
            by the PyTorch backends' fresh processes.
        timeout: seconds per process.
        peak: set each backend against this CPU's peak of its precision (about 4 s).

    Returns:
        A :class:`BenchResult` (its keys: the class's docstring).

    Raises:
        EdgesegError: unknown backend, bad source, missing calibration data, a backend
            that fails (its last error line).
    """
    names, (h, w) = _backends_for(source, backends, calib_data or data), parse_size(size)
    _check_budget(budget_miou, mixed_precision, data)
    threads, repeats, iterations = _counts(threads, repeats, iterations)
    with work_folder(workdir, "edgeseg-bench-") as work:
        src = _Source.resolve(source, names, work, num_classes, (h, w))
        runs = {"threads": threads, "warmup": warmup, "iterations": iterations}
        job_base = src.job(size=[h, w], workdir=str(work), external=dict(external or {}), **runs)
        labels, scorer = _scoring(src, work, data, split, eval_images, (h, w), threads)
        mixed = (scorer, budget_miou) if mixed_precision and scorer is not None else None
        calib = (calib_data or data, calib_split, calib_images)
        quant, errors = _artefacts(src, names, work, (h, w), calib, mixed)
        results = _rounds(names, job_base, repeats, work, timeout, errors, labels is not None)
        ok = _ran(names, errors)
        header = _header(source, src, job_base, repeats)
        args = (src.num_classes, src.ckpt, budget_miou, quant, header)
        out = _summarise(results, ok, work, labels, *args)
        _attained(out, src, (h, w), measure_peak(threads, gemm=False) if peak else None)
        return BenchResult(schema=BENCH_SCHEMA, **out, errors=errors)


def _counts(threads: Any, repeats: Any, iterations: Any) -> tuple[int, int, int]:
    """The run's counts, each checked (one line naming the flag)."""
    return (
        thread_count(threads, "--threads"),
        positive_int(repeats, "--repeats"),
        positive_int(iterations, "--iterations"),
    )


def _ran(names: list[str], errors: dict[str, str]) -> list[str]:
    """The backends that ran; when not one did, every reason in one line."""
    ok = [b for b in names if b not in errors]
    if not ok:
        raise EdgesegError("; ".join(f"{b}: {e}" for b, e in errors.items()))
    return ok


def _attained(out: dict[str, Any], src: _Source, size: tuple[int, int], peak: Peak | None) -> None:
    """Add the network's arithmetic, each backend's G(FL)OP/s and, given the CPU's
    ``peak``, the share of its own precision's peak (rows of an unknown network: none)."""
    model = src.model
    if model is None and src.ckpt and not src.ckpt["model"].get("pruned"):
        # An ONNX file: its metadata names the network (a pruned one's widths it does not).
        with contextlib.suppress(EdgesegError, TypeError, KeyError, ValueError):
            model = build_model(src.ckpt).eval()
    if model is None:
        return
    c = int(src.job()["in_channels"]) if src.model is not None else 3
    ops = count_flops(model, torch.zeros(1, c, *size))
    out["ops"] = ops
    if peak is not None:
        out["peak"] = peak.to_dict()
    for row in out["backends"].values():
        row["gops"] = ops / row["latency_ms"]["median"] / 1e6  # ms -> G per s
        top = peak.of(row["precision"].split("+")[0]) if peak is not None else None
        if top:
            row["peak_fraction"] = row["gops"] / top


def _header(source: str, src: _Source, job: dict[str, Any], repeats: int) -> dict[str, Any]:
    """What every bench result names: the source, the run's settings, the CPU."""
    return {
        "source": source,
        "kind": src.kind,
        "repeats": repeats,
        **{k: job[k] for k in ("size", "threads", "iterations")},
        "cpu": cpu_name(),
        "torch_version": torch.__version__,
    }


def _check_budget(budget: float, mixed_precision: bool, data: str | None) -> None:
    if not 0 <= budget < 1:  # also refuses nan
        raise EdgesegError(f"--accuracy-budget {budget}: an mIoU fraction in [0, 1)")
    if mixed_precision and not data:
        raise EdgesegError("--mixed-precision needs --data (it measures accuracy)")


def _scoring(
    src: _Source,
    work: Path,
    data: str | None,
    split: str,
    n: int | None,
    size: tuple[int, int],
    threads: int,
) -> tuple[np.ndarray | None, Scorer | None]:
    """The labelled images every backend predicts (saved as ``work/eval.pt``) and a scorer
    of ONNX files on them; ``(None, None)`` without data or a checkpoint."""
    if not data or src.ckpt is None:
        return None, None
    images, labels = eval_set(src.ckpt, data, split, n, size)
    torch.save(images, work / "eval.pt")
    ignore = src.ckpt["dataset"]["ignore_index"]
    return labels, Scorer(images, labels, src.num_classes, ignore, threads)


def _backends_for(source: str, backends: Sequence[str] | None, calib_data: str | None) -> list[str]:
    """The backends asked for, or every one that can run the source here (OpenVINO's
    only when its package is installed; int8 only with calibration data)."""
    if backends:
        return check_backends(backends)
    default = ONNX_BACKENDS if str(source).endswith(".onnx") else BACKENDS
    runnable = [b for b in default if not onnx_backend_unavailable(b)]
    if not native_bf16():
        runnable = [b for b in runnable if b not in BF16_BACKENDS]
    if calib_data is None and any(b.endswith("int8") for b in runnable):
        log.info("no --data: the int8 backends are left out (they calibrate on images)")
        runnable = [b for b in runnable if not b.endswith("int8")]
    return runnable


@dataclass
class _Source:
    """What ``bench`` was given: a model name, a checkpoint, or an ONNX file."""

    kind: str  # model | checkpoint | onnx
    path: Path  # the file (the name itself for a model name)
    num_classes: int
    model: nn.Module | None = None  # the eval-mode network (not for an ONNX file)
    ckpt: dict[str, Any] | None = None

    def job(self, **settings: Any) -> dict[str, Any]:
        """The part of a worker's job that says what to load (see :func:`run_job`)."""
        cfg = getattr(self.model, "edgeseg_config", None) or {}
        source = str(self.path.resolve()) if self.kind != "model" else str(self.path)
        return {
            "kind": self.kind,
            "source": source,
            "num_classes": self.num_classes,
            "in_channels": int(cfg.get("in_channels", 3)),
            **settings,
        }

    @classmethod
    def resolve(
        cls,
        source: str,
        names: list[str],
        work: Path,
        num_classes: int | None,
        size: tuple[int, int],
    ) -> _Source:
        """Load ``source``; an ONNX file is copied to ``work/fp32.onnx``.

        Raises:
            EdgesegError: a PyTorch backend for an ONNX file, an unknown name, a class
                count other than the file's, or a network too large for this machine at
                ``size``.
        """
        src = Path(source)
        if not src.exists() and source in PRETRAINED:  # shipped weights by name
            src = pretrained_path(source)
        if source.endswith(".onnx"):
            meta = onnx_metadata(src)  # refuses corrupt / foreign files
            bad = [b for b in names if b in TORCH_BACKENDS]
            if bad:
                raise EdgesegError(f"backend {bad[0]!r} needs a checkpoint or model name")
            _copy_onnx(src, work / "fp32.onnx")
            found = cls("onnx", src, len(meta["classes"]), ckpt=_onnx_as_checkpoint(meta))
        elif src.exists():
            model, ckpt = load_model(src)
            found = cls("checkpoint", src, int(ckpt["model"]["num_classes"]), model, ckpt)
        else:
            model_info(source)  # unknown names fail here, naming the closest ones
            torch.manual_seed(0)
            k = num_classes or NUM_CLASSES
            found = cls("model", src, k, create_model(source, num_classes=k).eval())
        if num_classes is not None and num_classes != found.num_classes:
            raise EdgesegError(
                f"{source} has {found.num_classes} classes, not the {num_classes} asked for "
                "(--classes)"
            )
        if found.model is not None:
            c = int(found.job()["in_channels"])
            check_forward(found.model, (1, c, *size), False, "lower --size (or --classes)")
        return found


def _copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX file into bench's folder, its weights with it: a file whose tensors sit
    in external-data files beside it (a > 2 GB export, or any ``save_as_external_data``)
    is loaded with them and written as one file."""
    import onnx

    proto = onnx.load(str(src), load_external_data=False)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        dst.write_bytes(src.read_bytes())
        return
    try:
        onnx.load_external_data_for_model(proto, str(src.parent))
    except Exception as e:  # onnx raises its own ValidationError for a missing file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EdgesegError(f"{src}: its external weights cannot be read: {first}") from None
    onnx.save(proto, str(dst))


def _artefacts(
    src: _Source,
    names: list[str],
    work: Path,
    size: tuple[int, int],
    calib: tuple[str | None, str, int],
    mixed: tuple[Scorer, float] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The files every process shares, made once: fp32 ONNX, calibration images, int8
    ONNX (mixed precision under ``mixed = (scorer, budget)``). Returns ``(quantization
    reports, backends that cannot be built: reason)``; such a backend is reported, not
    fatal: the others still run."""
    model = src.model
    # The files carry the checkpoint's classes and normalisation: edgeseg-run runs them.
    meta = checkpoint_metadata(src.ckpt) if src.kind == "checkpoint" and src.ckpt else None
    if src.kind != "onnx" and any(b in ONNX_ENGINES for b in names):
        export_onnx(model, work / "fp32.onnx", input_size=size, metadata=meta)
    quant: dict[str, Any] = {}
    # A backend whose engine is not installed is reported as unavailable; the rest run.
    errors = {b: why for b in names if (why := onnx_backend_unavailable(b))}
    if not any(b.endswith("int8") for b in names):
        _litert_artefacts(src, names, work, size, [], meta, errors)
        return quant, errors
    images = _calibration(src.ckpt, src.kind, *calib, size)
    torch.save(torch.stack(images), work / "calib.pt")
    kept: list[str] = []  # modules mixed precision keeps in fp32
    int8_onnx = [b for b in names if b in ("ort-int8", "openvino-int8")]
    if int8_onnx or (mixed and "nncf-int8" in names):  # one QDQ file, run by both engines
        report = _qdq_file(src, work, images, size, meta, mixed)
        kept = report["kept_fp32_modules"]
        quant.update({b: report for b in int8_onnx})
    if "nncf-int8" in names and "nncf-int8" not in errors:  # NNCF's own file, from fp32
        try:
            fp32 = work / "fp32.onnx"
            nncf = quantize_onnx_nncf(
                fp32, work / INT8_FILES["nncf-int8"], images, nodes_in_modules(fp32, kept)
            )
            quant["nncf-int8"] = {**nncf.to_dict(), "kept_fp32_modules": kept}
        except Exception as e:  # a third-party quantizer's failure costs its backend only
            errors["nncf-int8"] = f"NNCF could not quantize this network: {e}".splitlines()[0]
    _litert_artefacts(src, names, work, size, images, meta, errors)
    if "pt2e-int8" in names:
        example = torch.randn(1, images[0].shape[0], *size)
        try:
            quant["pt2e-int8"] = pt2e_convert(model, images, example)[1].to_dict()
        except EdgesegError as e:
            errors["pt2e-int8"] = str(e)
    return quant, errors


def _litert_artefacts(
    src: _Source,
    names: list[str],
    work: Path,
    size: tuple[int, int],
    images: list[torch.Tensor],
    meta: dict[str, Any] | None,
    errors: dict[str, str],
) -> None:
    """The ``.tflite`` files of the LiteRT backends asked for; a network the converter
    cannot take costs those backends only (the reason goes to ``errors``)."""
    from edgeseg.deploy.litert import export_litert

    for b in (b for b in LITERT_FILES if b in names and b not in errors):
        if src.model is None:
            errors[b] = "LiteRT backends convert the network: give a checkpoint or model name"
            continue
        calib = images if b == "litert-int8" else None
        try:
            export_litert(
                src.model, work / LITERT_FILES[b], input_size=size, calibration=calib, metadata=meta
            )
        except EdgesegError as e:
            errors[b] = str(e)


def _qdq_file(
    src: _Source,
    work: Path,
    images: list[torch.Tensor],
    size: tuple[int, int],
    meta: dict[str, Any] | None,
    mixed: tuple[Scorer, float] | None,
) -> dict[str, Any]:
    """``work/int8.onnx``, edgeseg's QDQ file (mixed precision under ``mixed``); its
    QuantReport as a dict, with the search's result under ``"mixed"``."""
    out, fp32 = work / "int8.onnx", work / "fp32.onnx"
    if mixed is not None:
        res = (
            mixed_precision(fp32, out, images, *mixed)
            if src.kind == "onnx"
            else mixed_model_onnx(src.model, out, images, size, *mixed, metadata=meta)
        )
        found = res.to_dict()
        return {**found.pop("quantization"), "kept_fp32_modules": res.kept_fp32, "mixed": found}
    if src.kind == "onnx":  # a given ONNX file is quantized as it is
        report = quantize_onnx(fp32, out, images)
    else:  # from the network: transposed convs rewritten to run in int8 too
        report = quantize_model_onnx(src.model, out, images, size, metadata=meta)
    return {**report.to_dict(), "kept_fp32_modules": []}


def _rounds(
    names: list[str],
    job_base: dict[str, Any],
    repeats: int,
    work: Path,
    timeout: float,
    errors: dict[str, str],
    predict: bool,
) -> dict[str, dict[str, Any]]:
    """``repeats`` rounds over the backends, alternating their order, each run in a
    fresh process; a backend that fails is moved to ``errors``."""
    results: dict[str, dict[str, Any]] = {b: {"times_ms": []} for b in names}
    t0 = time.perf_counter()
    for r in range(repeats):
        if r == 1:  # the first round measured: the rest costs about as much each
            _announce_rounds(time.perf_counter() - t0, repeats - 1, len(names))
        for b in names if r % 2 == 0 else names[::-1]:
            if b in errors:
                continue
            log.info("bench %s: round %d/%d", b, r + 1, repeats)
            job = {**job_base, "backend": b, "predict": r == 0 and predict}
            try:
                out = _spawn(job, work, timeout)
            except EdgesegError as e:
                errors[b] = str(e)
                continue
            res = results[b]
            res["times_ms"] += out["times_ms"]
            res["peak_rss_bytes"] = max(res.get("peak_rss_bytes", 0), out["peak_rss"])
            res["base_rss_bytes"] = out["base_rss"]
            res["build_s"] = out["build_s"]
            res["precision"] = out["precision"]
    return results


def _announce_rounds(round_s: float, rounds: int, backends: int) -> None:
    """State how long the remaining rounds take here, from the first one's time."""
    left = round_s * rounds
    log.warning(
        f"planned: {rounds} more round{'s' * (rounds > 1)} of {backends} backend"
        f"{'s' * (backends > 1)} on {cpu_name()}, about {format_duration(left)}, "
        f"until about {finish_time(left)}"
    )


def _calibration(
    ckpt: dict[str, Any] | None,
    kind: str,
    data: str | None,
    split: str,
    n: int,
    size: tuple[int, int],
) -> list[torch.Tensor]:

    if ckpt is not None:  # a checkpoint, or an ONNX file's metadata
        return calibration_images(ckpt, data, split, n, size)
    if data:
        raise EdgesegError(f"calibration from --data needs a checkpoint, not a {kind} name")
    # A bare model name has random weights: calibrate on random inputs (timing only).
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, *size, generator=g) for _ in range(min(n, 8))]


def eval_set(
    ckpt: dict[str, Any] | None, data: str, split: str, n: int | None, size: tuple[int, int]
) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``n`` (all: ``None``) images of ``data``'s ``split`` at ``size``,
    normalised as ``ckpt`` was trained, and their labels: ``((N, C, H, W), (N, H, W))``."""

    info = DatasetInfo.from_dict(ckpt["dataset"])  # type: ignore[index]
    ds = build_dataset(data, split, info, eval_transform(size))
    count = len(ds) if n is None else min(n, len(ds))
    items = [ds[i] for i in range(count)]
    return torch.stack([x for x, _ in items]), np.stack([y.numpy() for _, y in items])


#: What runs an ONNX file (the PyTorch backends need the network).
ONNX_BACKENDS = tuple(ONNX_ENGINES)


def _reference(backends: dict[str, Any]) -> str:
    """The fp32 backend accuracy is measured against: eager, else (an ONNX file) ort."""
    return "eager" if "eager" in backends else "ort"


def _onnx_as_checkpoint(meta: dict[str, Any]) -> dict[str, Any]:
    """What calibration and scoring need of a checkpoint, from an ONNX file's metadata."""
    name = str(meta.get("dataset") or "custom")
    label_map = get_preset(name).label_map if name in PRESETS else None
    info = DatasetInfo(
        name,
        tuple(meta["classes"]),
        tuple(tuple(c) for c in meta["palette"]),
        int(meta.get("ignore_index", 255)),
        tuple(meta["mean"]),
        tuple(meta["std"]),
        label_map,
    )
    return {"dataset": info.to_dict(), "model": meta["model"]}


def fastest_within_budget(
    backends: dict[str, dict[str, Any]], budget: float = 0.01, among: Sequence[str] | None = None
) -> str:
    """The fastest backend losing at most ``budget`` mIoU against the fp32 reference
    (``eager``; for an ONNX file, ``ort``): the one rule bench, export and bundles use.

    Args:
        backends: ``bench()``'s ``backends`` (each with ``latency_ms.median`` and, when
            scored, ``miou``).
        budget: mIoU that may be lost (0.01: one point). Unscored backends, or all of them
            when ``eager`` is unscored, compete on speed alone.
        among: only these may be chosen (the reference still sets the bar); when none of
            them is within the budget, the fastest of them.
    """
    ref = backends.get(_reference(backends), {}).get("miou")
    ms = {b: backends[b]["latency_ms"]["median"] for b in backends if among is None or b in among}
    miou = {b: backends[b].get("miou") for b in ms}
    return fastest_within(ms, miou, ref, budget) or min(ms, key=ms.__getitem__)


def _summarise(
    results: dict[str, dict[str, Any]],
    names: list[str],
    work: Path,
    labels: np.ndarray | None,
    num_classes: int,
    ckpt: dict[str, Any] | None,
    budget: float,
    quant: dict[str, Any],
    header: dict[str, Any],
) -> dict[str, Any]:

    out: dict[str, Any] = {**header, "backends": {}, "quantization": quant}
    ignore = ckpt["dataset"]["ignore_index"] if ckpt else None
    ref_pred = None
    if labels is not None and (work / "pred-eager.npy").is_file():
        ref_pred = np.load(work / "pred-eager.npy")
    base = None
    for b in names:
        t = results[b]["times_ms"]
        med = statistics.median(t)
        row: dict[str, Any] = {
            "latency_ms": {"median": med, "p90": float(np.percentile(t, 90))},
            "images_per_s": 1000.0 / med,
            "peak_rss_bytes": results[b]["peak_rss_bytes"],
            "base_rss_bytes": results[b]["base_rss_bytes"],
            "build_s": results[b]["build_s"],
            "runs": len(t),
            "precision": results[b]["precision"],
        }
        fp32 = "fp32.onnx"
        art = {
            "ort": fp32,
            "openvino": fp32,
            "openvino-bf16": fp32,
            **INT8_FILES,
            **LITERT_FILES,
        }.get(b)
        art = work / art if art else None
        if art is not None and art.is_file():
            row["size_bytes"] = art.stat().st_size
            row["zip_bytes"] = zip_size(art)
        pred_file = work / f"pred-{b}.npy"
        if labels is not None and pred_file.is_file():
            pred = np.load(pred_file)
            cm = confusion_matrix(pred, labels, num_classes, ignore)
            row["miou"] = mean_iou(cm)
            if ref_pred is not None:
                row["pixel_agreement"] = float((pred == ref_pred).mean())
        out["backends"][b] = row
        if b == "eager":
            base = med
    if base is not None:
        for row in out["backends"].values():
            row["speedup"] = base / row["latency_ms"]["median"]
    ref = _reference(out["backends"])
    ref_miou = out["backends"].get(ref, {}).get("miou")
    out["best"] = fastest_within_budget(out["backends"], budget)
    out["best_reason"] = (
        f"fastest backend losing at most {budget:.3f} mIoU against {ref}"
        if ref_miou is not None
        else "fastest backend (no accuracy measured: pass --data)"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m edgeseg.measure.bench JOB.json`` writes ``JOB.json.out``."""
    args = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(args[0]).read_text())
    try:
        result = run_job(job)
    except EdgesegError as e:
        print(f"edgeseg: error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(args[0] + ".out", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
