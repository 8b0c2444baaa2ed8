"""``edgeseg compress``: compress a trained checkpoint and measure what it bought.

One function, :func:`compress_checkpoint`, for the three methods:

* ``prune``: remove ``ratio`` of the channels (:mod:`edgeseg.compress.prune`), then
  fine-tune the narrower network;
* ``sparsify``: fine-tune with magnitude pruning to ``sparsity`` on seed 003's schedule
  (zeros shrink the compressed file, not the latency);
* ``group``: fine-tune with gradual grouping to ``groups`` groups, then extract
  ``Conv2d(groups=g)`` (ESSNet-family models).

Fine-tuning is ``edgeseg train`` with ``train.init`` set to the (pruned) weights and the
checkpoint's own recipe, so it is resumable like any run. The report (``OUT/report.json``)
holds, before and after: parameters, MACs, size on disk (``.pt`` and zipped, and int8
ONNX zipped when data are given), mIoU on the validation split, and latency with each
benchmarked backend and the best one.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.compress.grouping import AlphaSchedule, GradualGrouping
from edgeseg.compress.prune import prune_channels
from edgeseg.compress.sparsify import sparsity_report
from edgeseg.config import Config, apply_overrides, config_from_dict, config_to_dict
from edgeseg.data import DatasetInfo
from edgeseg.defaults import COMPRESS_METHODS, INPUT_SIZE
from edgeseg.engine.checkpoint import load_checkpoint, load_model, make_checkpoint, save_checkpoint
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import train
from edgeseg.errors import EdgesegError
from edgeseg.measure.bench import bench
from edgeseg.measure.counts import count_flops, param_count, zip_size
from edgeseg.utils import VersionedResult, atomic_write_bytes, atomic_write_json, text_table

__all__ = ["COMPRESS_SCHEMA", "METHODS", "CompressReport", "compress_checkpoint"]

log = logging.getLogger(__name__)

METHODS = COMPRESS_METHODS


def _measure(
    ckpt_path: Path,
    data: str | None,
    size: tuple[int, int],
    threads: int,
    backends: list[str],
    work: Path,
    int8_size: bool,
) -> dict[str, Any]:
    """Size, counts, accuracy and latency of one checkpoint."""

    model, ckpt = load_model(ckpt_path)
    x = torch.randn(1, int(ckpt["model"].get("in_channels", 3)), *size)
    out: dict[str, Any] = {
        "checkpoint": str(ckpt_path),
        "params": param_count(model),
        "macs": count_flops(model, x) // 2,
        "sparsity": sparsity_report(model)["total"],
        "file_bytes": ckpt_path.stat().st_size,
        "zip_bytes": zip_size(ckpt_path),
    }
    if data:
        m = evaluate(ckpt_path, data, "val", threads=threads)
        out.update(miou=m["miou"], iou=m["iou"], pixel_acc=m["pixel_acc"])
    if backends or int8_size:
        todo = list(backends)
        if int8_size and data and "ort-int8" not in todo:
            todo.append("ort-int8")
        res = bench(
            str(ckpt_path),
            size=size,
            threads=threads,
            backends=todo,
            iterations=5,
            repeats=2,
            calib_data=data,
            workdir=work,
        )
        out["latency_ms"] = {b: r["latency_ms"]["median"] for b, r in res["backends"].items()}
        timed = {b: v for b, v in out["latency_ms"].items() if b in backends}
        if timed:
            out["best_backend"] = min(timed, key=timed.get)  # type: ignore[arg-type]
            out["best_ms"] = timed[out["best_backend"]]
        if (work / "int8.onnx").is_file():
            out["int8_onnx_bytes"] = (work / "int8.onnx").stat().st_size
            out["int8_onnx_zip_bytes"] = zip_size(work / "int8.onnx")
    return out


#: Version of :class:`CompressReport`'s fields (``schema``); one without it is version 1.
COMPRESS_SCHEMA = "edgeseg.compress/1"
_COLUMNS = ("", "params", "GMACs", "zeros %", "file MB", "zip MB", "int8 zip MB", "best ms",
            "mIoU")  # fmt: skip


def _mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e6:.1f}"


class CompressReport(VersionedResult):
    """What :func:`compress_checkpoint` returns (and writes as ``OUT/report.json``): the
    JSON-ready dict (``rep["after"]`` as before) and the one :meth:`table` the CLI prints.

    Keys: ``schema``, ``method``, ``source``, ``model``, ``settings``, ``size``,
    ``threads``, ``before`` and ``after`` (params, macs, sparsity, file/zip bytes, best
    backend and ms, mIoU), ``ratios`` and, by method, ``pruning`` or ``recipe``.
    """

    SCHEMA, KIND = COMPRESS_SCHEMA, "compress report"

    def table(self) -> str:
        """Before and after, side by side, and the ratios."""
        rows = []
        for when in ("before", "after"):
            r = self[when]
            rows.append(
                (
                    when,
                    f"{r['params']:,}",
                    f"{r['macs'] / 1e9:.2f}",
                    f"{100 * r['sparsity']:.1f}",
                    _mb(r["file_bytes"]),
                    _mb(r["zip_bytes"]),
                    _mb(r.get("int8_onnx_zip_bytes")),
                    f"{r['best_ms']:.1f} ({r['best_backend']})" if "best_ms" in r else "-",
                    f"{r['miou']:.4f}" if r.get("miou") is not None else "-",
                )
            )
        return "\n".join(
            [
                f"{self['method']} {self['model']} ({self['source']})",
                text_table(rows, _COLUMNS),
                ", ".join(f"{k} {v:.3f}" for k, v in self["ratios"].items()),
            ]
        )


def compress_checkpoint(
    checkpoint: str | Path,
    method: str,
    out: str | Path,
    *,
    data: str | None = None,
    epochs: int = 0,
    ratio: float = 0.5,
    sparsity: float = 0.6,
    groups: int = 2,
    round_to: int = 8,
    size: tuple[int, int] = INPUT_SIZE,
    threads: int = 2,
    backends: tuple[str, ...] = ("channels_last", "ort"),
    overrides: list[str] | None = None,
) -> CompressReport:
    """Compress ``checkpoint`` with ``method``, fine-tune, and report before and after.

    Args:
        checkpoint: a trained checkpoint (file, run directory or shipped-weights name).
        method: ``prune``, ``sparsify`` or ``group``.
        out: output folder: ``compressed.pt``, ``run/`` (fine-tuning), ``report.json``.
        data: data root for fine-tuning, accuracy and int8 calibration (default: the
            checkpoint recipe's ``data.root``, if it exists here).
        epochs: fine-tuning epochs (``prune`` may use 0; the others need at least 1).
        ratio: ``prune``: fraction of channels removed per coupled group, in ``[0, 1)``.
        sparsity: ``sparsify``: final fraction of zero weights, in ``[0, 1)``.
        groups: ``group``: g of the grouped pointwise convs.
        round_to: ``prune``: keep multiples of this many channels.
        size: input HxW for MACs and latency.
        threads: threads for everything measured.
        backends: runtime backends timed before and after (empty: no latency).
        overrides: ``section.key=value`` for the fine-tuning recipe (e.g. ``optim.lr=2e-4``).

    Returns:
        The :class:`CompressReport` (also written to ``OUT/report.json``).

    Raises:
        EdgesegError: unknown method, a value out of range, a method that does not apply
            to the model (grouping without Conv-modules or groups not dividing channels).
    """
    _check_settings(method, ratio, sparsity, groups, epochs)
    src = load_checkpoint(checkpoint)
    model, _ = load_model(checkpoint)
    data = _data_root(src, data, epochs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if method == "group":  # check applicability on a copy before any long step
        GradualGrouping(copy.deepcopy(model), groups, AlphaSchedule(1))
    settings = {"ratio": ratio, "sparsity": sparsity, "groups": groups, "epochs": epochs}
    report = CompressReport(
        schema=COMPRESS_SCHEMA,
        method=method,
        source=str(src["path"]),
        model=src["model"]["name"],
        settings={**settings, "round_to": round_to},
        size=list(size),
        threads=threads,
    )
    measure = data, size, threads, list(backends)
    init = Path(src["path"])
    log.info("measuring the source checkpoint")
    report["before"] = _measure(init, *measure, out / "bench-before", method == "sparsify")
    if method == "prune":
        init, report["pruning"] = _prune(model, src, ratio, round_to, size, out / "pruned.pt")
    result = init
    if epochs:
        comp = _compression(method, sparsity, groups)
        cfg = _fine_tune_config(src, data, out / "run", epochs, init, threads, comp, overrides)
        result, report["recipe"] = _fine_tune(cfg, out / "run")
    atomic_write_bytes(final := out / "compressed.pt", result.read_bytes())
    log.info("measuring the compressed checkpoint")
    report["after"] = _measure(final, *measure, out / "bench-after", method == "sparsify")
    report["ratios"] = _ratios(report["before"], report["after"])
    atomic_write_json(out / "report.json", report)
    return report


def _data_root(src: dict[str, Any], data: str | None, epochs: int) -> str | None:
    """``data``, else the checkpoint recipe's own data root if it is on this machine."""
    if data is None:
        data = ((src.get("config") or {}).get("data") or {}).get("root")
        data = data if data and Path(data).is_dir() else None
    if epochs and not data:
        raise EdgesegError("--data: fine-tuning needs the training data root")
    return data


def _compression(method: str, sparsity: float, groups: int) -> dict[str, Any]:
    """The fine-tuning recipe's ``compress`` keys of ``method`` (pruning has none)."""
    if method == "sparsify":
        return {"sparsity": sparsity, "sparsity_every": 10}
    return {"groups": groups} if method == "group" else {}


def _fine_tune(cfg: Config, run: Path) -> tuple[Path, dict[str, Any]]:
    """Fine-tune (resuming a cut-short run); ``(its best checkpoint, the recipe used)``."""
    train(cfg, resume=(run / "last.pt").is_file())
    return run / "best.pt", config_to_dict(cfg)


def _prune(
    model: nn.Module, src: dict[str, Any], ratio: float, round_to: int, size: Any, path: Path
) -> tuple[Path, dict[str, Any]]:
    """Prune ``model`` in place and save it as a checkpoint at ``path``."""
    x = torch.randn(1, int(src["model"].get("in_channels", 3)), *size)
    pruning = prune_channels(model, ratio, x, round_to=round_to)
    info = DatasetInfo.from_dict(src["dataset"])
    recipe = dict(src.get("config") or {})
    save_checkpoint(
        make_checkpoint(model, info, input_size=src.get("input_size"), config=recipe), path
    )
    return path, pruning


def _check_settings(method: str, ratio: float, sparsity: float, groups: int, epochs: int) -> None:
    """Refuse a value out of range before any work, naming its flag."""
    if method not in METHODS:
        raise EdgesegError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "prune" and not 0 <= ratio < 1:
        raise EdgesegError(f"--ratio {ratio}: the fraction of channels to remove must be in [0, 1)")
    if method == "sparsify" and not 0 <= sparsity < 1:
        raise EdgesegError(f"--sparsity {sparsity}: must be in [0, 1)")
    if method == "group" and groups < 2:
        raise EdgesegError(f"--groups {groups}: must be at least 2")
    if method != "prune" and epochs < 1:
        raise EdgesegError(f"--epochs {epochs}: {method} happens during fine-tuning (>= 1)")


def _fine_tune_config(
    src: dict[str, Any],
    data: str,
    run: Path,
    epochs: int,
    init: Path,
    threads: int,
    compress: dict[str, Any],
    overrides: list[str] | None,
) -> Config:
    """The source checkpoint's own recipe, re-aimed at fine-tuning ``init`` into ``run``."""
    cfg = copy.deepcopy(dict(src.get("config") or {}))
    cfg["model"] = {"name": src["model"]["name"], "kwargs": dict(src["model"].get("kwargs") or {})}
    cfg.setdefault("data", {})["root"] = data
    train_cfg = {
        "out": str(run),
        "epochs": epochs,
        "init": str(init),
        "eval_every": 1,
        "max_minutes": None,
        "threads": threads,
        "compile": False,
    }
    cfg.setdefault("train", {}).update(train_cfg)
    cfg.setdefault("compress", {}).update(compress)
    out = config_from_dict(apply_overrides(cfg, list(overrides or [])))
    out.validate()
    return out


def _ratios(b: dict[str, Any], a: dict[str, Any]) -> dict[str, float]:
    """After / before of what compression changes."""
    ratios = {
        "params": a["params"] / b["params"],
        "macs": a["macs"] / b["macs"],
        "zip_bytes": a["zip_bytes"] / b["zip_bytes"],
    }
    if "best_ms" in a and "best_ms" in b:
        ratios["speedup_best"] = b["best_ms"] / a["best_ms"]
    if "int8_onnx_zip_bytes" in a:
        # Seed 003's claim: sparsified + int8 vs the dense fp32 weights file, both zipped.
        ratios["int8_zip_vs_fp32_zip"] = a["int8_onnx_zip_bytes"] / b["zip_bytes"]
    if "miou" in a and "miou" in b:
        ratios["miou_change"] = a["miou"] - b["miou"]
    return ratios
