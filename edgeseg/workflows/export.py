"""``edgeseg export``: a checkpoint to an fp32 or int8 ONNX file, with a parity check
against PyTorch on real images (or random inputs without data).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeseg.defaults import ACCURACY_BUDGET, CALIB_IMAGES, INPUT_SIZE, THREADS
from edgeseg.deploy.backends import (
    BF16_BACKENDS,
    ONNX_ENGINES,
    native_bf16,
    onnx_backend_unavailable,
)
from edgeseg.deploy.export import (
    DEFAULT_OPSET,
    ExportResult,
    checkpoint_metadata,
    export_onnx,
    onnx_session,
    parity,
)
from edgeseg.deploy.labels import OUTPUTS, labels_file
from edgeseg.errors import EdgesegError
from edgeseg.utils import parse_size

log = logging.getLogger(__name__)


def _check_images(
    ckpt: dict[str, Any], data: str | None, split: str, n: int, size: tuple[int, int]
) -> tuple[list[torch.Tensor], str]:
    """Up to ``n`` normalised images of the data split, else random inputs."""
    if data:
        from edgeseg.data import build_dataset
        from edgeseg.data.presets import DatasetInfo
        from edgeseg.data.transforms import eval_transform

        info = DatasetInfo.from_dict(ckpt["dataset"])
        ds = build_dataset(data, split, info, eval_transform(size))
        return [ds[i][0] for i in range(min(n, len(ds)))], "data"
    g = torch.Generator().manual_seed(0)
    in_ch = int(ckpt["model"].get("in_channels", 3))
    return [torch.randn(in_ch, *size, generator=g) for _ in range(n)], "random"


@dataclass(frozen=True)
class Int8Options:
    """How :func:`export_checkpoint` makes an int8 file."""

    quantizer: str = "ort"  # "ort": edgeseg's QDQ file (ORT's static quantizer on the int8
    # graph); "nncf": NNCF's, from the fp32 export (the nncf-int8 backend's, for OpenVINO)
    calib_split: str = "train"  # calibration split of the export's data
    calib_images: int = CALIB_IMAGES  # calibration images
    # score the int8 file on the export's split and, when it loses more than budget_miou,
    # keep its most sensitive modules in fp32 until it does not (edgeseg.deploy.mixed)
    mixed_precision: bool = False
    budget_miou: float = ACCURACY_BUDGET  # mIoU the int8 file may lose against fp32
    keep_fp32: tuple[str, ...] = ()  # modules kept in fp32 (a search's earlier result)

    def check(self) -> None:
        """Raise EdgesegError (one line) on a bad quantizer or budget."""
        if self.quantizer not in ("ort", "nncf"):
            raise EdgesegError(f"--quantizer {self.quantizer!r}: choose ort or nncf")
        if not 0 <= self.budget_miou < 1:  # also refuses nan
            raise EdgesegError(f"--accuracy-budget {self.budget_miou}: an mIoU fraction in [0, 1)")


def _export_int8(
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    out: str | os.PathLike[str],
    size: tuple[int, int],
    opset: int,
    opts: Int8Options,
    data: str | None,
    split: str,
) -> tuple[str, int, dict[str, Any]]:
    """The int8 file, calibrated on ``data`` (and searched on its ``split`` with mixed
    precision) as ``opts`` says. Returns (exporter, fp32 size, quantization report with
    ``kept_fp32_modules`` and ``mixed``)."""
    from edgeseg.deploy.quantize import calibration_images, quantize_model_onnx, quantize_onnx_nncf
    from edgeseg.deploy.scopes import nodes_in_modules

    meta = checkpoint_metadata(ckpt)
    calib = calibration_images(ckpt, data, opts.calib_split, opts.calib_images, size)
    mixed, keep = None, list(opts.keep_fp32)
    if opts.mixed_precision:
        mixed = _search_mixed(model, ckpt, calib, size, data, split, opts.budget_miou)
        keep = mixed["kept_fp32"]
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"  # the plain fp32 file: NNCF's input, and the size
        exporter = export_onnx(model, fp32, input_size=size, opset=opset, metadata=meta)
        fp32_size = fp32.stat().st_size
        if opts.quantizer == "nncf":
            report = quantize_onnx_nncf(fp32, out, calib, nodes_in_modules(fp32, keep))
    if opts.quantizer != "nncf":
        report = quantize_model_onnx(
            model, out, calib, size, opset=opset, metadata=meta, keep_fp32=keep
        )
    return exporter, fp32_size, {**report.to_dict(), "kept_fp32_modules": keep, "mixed": mixed}


def _search_mixed(
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    calib: list[torch.Tensor],
    size: tuple[int, int],
    data: str | None,
    split: str,
    budget: float,
) -> dict[str, Any]:
    """The mixed-precision search of :mod:`edgeseg.deploy.mixed` on ``data``'s
    ``split``; its result as a dict (``kept_fp32``: the modules to keep)."""
    from edgeseg.deploy.mixed import Scorer, mixed_model_onnx
    from edgeseg.measure.bench import eval_set

    if not data:
        raise EdgesegError("--mixed-precision needs --data (it measures accuracy)")
    images, labels = eval_set(ckpt, data, split, None, size)
    ds = ckpt["dataset"]
    score = Scorer(images, labels, int(ckpt["model"]["num_classes"]), ds["ignore_index"])
    with tempfile.TemporaryDirectory(prefix="edgeseg-mixed-") as tmp:
        res = mixed_model_onnx(model, Path(tmp) / "m.onnx", calib, size, score, budget)
    found = res.to_dict()
    found.pop("quantization")
    return found


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | str | None = None,
    opset: int = DEFAULT_OPSET,
    data: str | None = None,
    split: str = "val",
    check_images: int = 4,
    int8: Int8Options | None = None,
    output: str = "logits",
) -> ExportResult:
    """Export a checkpoint to ONNX (fp32, or int8) and check it against PyTorch.

    Args:
        checkpoint: checkpoint file or run directory.
        out: the ``.onnx`` file to write.
        input_size: example and check size (default: the checkpoint's, else 360x480).
        opset: ONNX opset (>= 17).
        data: data root whose ``split`` images the parity check uses (default: random
            inputs), and int8's calibration and mixed-precision data.
        split: split of ``data`` for the check (and mixed precision's scoring).
        check_images: images in the parity check.
        int8: quantize as :class:`Int8Options` says (QDQ, per-channel int8 weights,
            uint8 activations); the parity check then measures the int8 model against
            fp32 PyTorch.
        output: ``logits`` (the model contract's), or the uint8 label map computed in
            the graph: ``labels`` (arg-max at full resolution), ``labels-half`` /
            ``labels-quarter`` (at 1/2 or 1/4 of it) or ``labels-low`` (at the network's
            output resolution), labels upsampled (:mod:`edgeseg.deploy.labels`).

    Raises:
        CheckpointError, DataError, EdgesegError: one line each, naming the file.
    """
    from edgeseg.engine.checkpoint import load_model

    if output not in OUTPUTS:
        raise EdgesegError(f"--output {output!r}: choose one of {', '.join(OUTPUTS)}")
    model, ckpt = load_model(checkpoint)
    size = parse_size(input_size or ckpt.get("input_size") or INPUT_SIZE)
    meta = checkpoint_metadata(ckpt)
    quant, fp32_size = None, 0
    if int8 is not None:
        int8.check()
        exporter, fp32_size, quant = _export_int8(model, ckpt, out, size, opset, int8, data, split)
    else:
        exporter = export_onnx(model, out, input_size=size, opset=opset, metadata=meta)
    if output != "logits":
        output = labels_file(out, output)
    images, source = _check_images(ckpt, data, split, check_images, size)
    session = onnx_session(out)
    max_diff, agreement = parity(model, session, images)
    return ExportResult(
        path=str(out),
        size_bytes=Path(out).stat().st_size,
        opset=opset,
        exporter=exporter,
        max_abs_diff=max_diff,
        pixel_agreement=agreement,
        check_images=len(images),
        check_source=source,
        precision="int8" if int8 is not None else "fp32",
        fp32_size_bytes=fp32_size or Path(out).stat().st_size,
        quantization=quant,
        output=output,
    )


def export_litert_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | str | None = None,
    data: str | None = None,
    split: str = "val",
    check_images: int = 4,
    int8: Int8Options | None = None,
) -> ExportResult:
    """Export a checkpoint to a LiteRT ``.tflite`` file (fp32, or int8 calibrated on
    ``data``'s ``int8.calib_split`` like ONNX int8) and check it against PyTorch in the
    LiteRT interpreter (:mod:`edgeseg.deploy.litert`).

    Raises:
        CheckpointError, DataError, EdgesegError: one line each, naming the file.
    """
    from edgeseg_runtime.backends import make_runner

    from edgeseg.deploy.litert import export_litert, litert_export_unavailable
    from edgeseg.deploy.quantize import calibration_images
    from edgeseg.engine.checkpoint import load_model

    if Path(out).suffix != ".tflite":
        raise EdgesegError(f"--out {out}: a LiteRT file is named *.tflite")
    if why := litert_export_unavailable():
        raise EdgesegError(why)
    model, ckpt = load_model(checkpoint)
    size = parse_size(input_size or ckpt.get("input_size") or INPUT_SIZE)
    calib = None
    if int8 is not None:
        calib = calibration_images(ckpt, data, int8.calib_split, int8.calib_images, size)
    made = export_litert(
        model, out, input_size=size, calibration=calib, metadata=checkpoint_metadata(ckpt)
    )
    images, source = _check_images(ckpt, data, split, check_images, size)
    max_diff, agreement = parity(model, make_runner("litert", out), images)
    return ExportResult(
        path=str(out),
        size_bytes=made["size_bytes"],
        opset=0,
        exporter=made["converter"],
        max_abs_diff=max_diff,
        pixel_agreement=agreement,
        check_images=len(images),
        check_source=source,
        precision=made["precision"],
        fp32_size_bytes=made["size_bytes"],
    )


def export_bundle(
    checkpoint: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    data: str | None = None,
    split: str = "val",
    eval_images: int | None = None,
    input_size: tuple[int, int] | str | None = None,
    threads: int = THREADS,
    budget_miou: float = ACCURACY_BUDGET,
    calib_images: int = CALIB_IMAGES,
    mixed_precision: bool = True,
    output: str | None = None,
) -> dict[str, Any]:
    """A deployment bundle (:mod:`edgeseg_runtime.bundle`) for the torch-free runtime.

    The ONNX backends that can run here are benchmarked side by side in fresh processes;
    the artefact is the fastest backend's within ``budget_miou`` of PyTorch fp32 on
    ``data``'s ``split`` (without ``data``, no int8), exported with its metadata and parity
    check. With ``mixed_precision`` (and ``data``), an int8 file over the budget keeps its
    most sensitive modules in fp32 (the card's ``kept_fp32``). Its output form
    (:mod:`edgeseg.deploy.labels`) is ``output`` when given, else the fastest within the
    same budget as measured on the chosen engine (:mod:`edgeseg.measure.outputs`; without
    ``data``, the exact forms only). ``model.json`` records the classes, palette,
    normalisation, input size, and each backend's and output form's latency and mIoU here.

    Returns:
        The bundle's card (``model.json``'s content).
    """
    from edgeseg.engine.checkpoint import load_model
    from edgeseg.measure.bench import bench, fastest_within_budget

    dest = _free_bundle_folder(folder)
    if output is not None and output not in OUTPUTS:
        raise EdgesegError(f"--output {output!r}: choose one of {', '.join(OUTPUTS)}")
    _, ckpt = load_model(checkpoint)
    size = parse_size(input_size or ckpt.get("input_size") or INPUT_SIZE)
    onnx = _bundle_engines(data)
    res = bench(
        str(checkpoint),
        size=size,
        threads=threads,
        backends=["eager", *onnx],
        data=data,
        split=split,
        eval_images=eval_images,
        calib_data=data,
        calib_images=calib_images,
        budget_miou=budget_miou,
        mixed_precision=mixed_precision and bool(data),
    )
    rows = {b: r for b, r in res["backends"].items() if b in onnx}
    if not rows:
        raise EdgesegError(f"no ONNX backend ran for {checkpoint}: {res.get('errors')}")
    chosen = fastest_within_budget(res["backends"], budget_miou, among=list(rows))  # eager: ref
    with tempfile.TemporaryDirectory(prefix="edgeseg-bundle-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        exp = export_checkpoint(
            checkpoint,
            model_file,
            input_size=size,
            data=data,
            split=split,
            int8=_chosen_int8(chosen, res, calib_images),
        )
        ref = res["backends"].get("eager", {}).get("miou")
        form, outputs = _bundle_output(
            model_file,
            ONNX_ENGINES[chosen][0],
            output,
            size,
            _scoring_set(ckpt, data, split, eval_images, size),
            (threads, ref, budget_miou),
        )
        blob = model_file.read_bytes()
    card = _bundle_card(ckpt, size, exp, chosen, rows, res, threads)
    card.update(output=form, outputs=outputs)
    _publish_bundle(dest, blob, card)
    log.info("bundle %s: %s (%s), output %s", folder, chosen, exp.precision, form)
    return card


def _bundle_engines(data: str | None) -> list[str]:
    """The ONNX backends a bundle chooses among here: installed, int8 only with data to
    check it on, bf16 only on a CPU with bf16 arithmetic."""
    return [
        b
        for b in ONNX_ENGINES
        if not onnx_backend_unavailable(b)
        and (data or not b.endswith("int8"))
        and (b not in BF16_BACKENDS or native_bf16())
    ]


def _scoring_set(
    ckpt: dict[str, Any], data: str | None, split: str, n: int | None, size: tuple[int, int]
) -> tuple[Any, Any, int, int] | None:
    """``(images, labels, classes, ignore index)`` of ``data``'s split to score output
    forms on, or ``None`` without data."""
    from edgeseg.measure.bench import eval_set

    if not data:
        return None
    images, labels = eval_set(ckpt, data, split, n, size)
    return images, labels, int(ckpt["model"]["num_classes"]), ckpt["dataset"]["ignore_index"]


def _bundle_output(
    model_file: Path,
    engine: str,
    output: str | None,
    size: tuple[int, int],
    scoring: tuple[Any, Any, int, int] | None,
    rule: tuple[int, float | None, float],
) -> tuple[str, dict[str, Any]]:
    """Rewrite the bundle's file to its output form: ``output`` when asked for, else the
    fastest measured (``rule``: threads, reference mIoU, budget) within the budget of the
    reference. Returns ``(form applied, {form: measured row})``."""
    import numpy as np

    from edgeseg.measure.outputs import EXACT, choose_output, measure_outputs

    if output is not None:
        return (output if output == "logits" else labels_file(model_file, output)), {}
    threads, reference_miou, budget = rule
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    forms = OUTPUTS if scoring is not None else EXACT
    rows = measure_outputs(model_file, engine, rgb, forms=forms, scoring=scoring, threads=threads)
    form = choose_output(rows, reference_miou, budget)
    applied = form if form == "logits" else labels_file(model_file, form)
    log.info(
        "output %s: %.1f ms per image against %.1f ms for logits + host arg-max",
        applied,
        rows[form].median_ms,
        rows["logits"].median_ms,
    )
    return applied, {f: r.to_dict() for f, r in rows.items()}


def _chosen_int8(chosen: str, res: dict[str, Any], calib_images: int) -> Int8Options | None:
    """The int8 options that make the bench's chosen int8 file again (its quantizer, the
    modules mixed precision kept in fp32), or ``None`` for an fp32 backend."""
    if not chosen.endswith("int8"):
        return None
    kept = res["quantization"].get(chosen, {}).get("kept_fp32_modules", [])
    quantizer = "nncf" if chosen == "nncf-int8" else "ort"
    return Int8Options(quantizer, calib_images=calib_images, keep_fp32=tuple(kept))


def _free_bundle_folder(folder: str | os.PathLike[str]) -> Path:
    """The bundle's folder, refused before any work when it holds anything."""
    dest = Path(folder)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise EdgesegError(
            f"--bundle {dest}: exists and is not an empty folder; nothing is overwritten, "
            "choose a new folder"
        )
    return dest


def _publish_bundle(dest: Path, blob: bytes, card: dict[str, Any]) -> None:
    """Write the bundle beside ``dest``, then rename it into place in one step: a reader
    never sees half a bundle, and of two exports into one folder the second is refused
    instead of mixing its files with the first's."""
    from edgeseg_runtime.bundle import write_bundle

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        write_bundle(tmp, blob, card)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would make the bundle private
        os.rename(tmp, dest)  # replaces only an empty folder
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise EdgesegError(
                f"--bundle {dest}: another process wrote it meanwhile; it was "
                "left as that process wrote it"
            ) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _bundle_card(
    ckpt: dict[str, Any],
    size: tuple[int, int],
    exp: ExportResult,
    chosen: str,
    rows: dict[str, Any],
    res: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    """``model.json``'s content: what the runtime needs, and what was measured here."""
    ds = ckpt["dataset"]
    return {
        "name": ckpt["model"]["name"],
        "classes": list(ds["classes"]),
        "palette": [list(c) for c in ds["palette"]],
        "mean": list(ds["mean"]),
        "std": list(ds["std"]),
        "layout": "NCHW",
        "input_size": list(size),
        # the file's precision, or bf16: an fp32 file the engine runs in bf16
        "precision": "bf16" if chosen in BF16_BACKENDS else exp.precision,
        "backend": ONNX_ENGINES[chosen][0],  # the runtime's: ort | openvino | openvino-bf16
        "measured": {
            "backend": chosen,
            "latency_ms": round(rows[chosen]["latency_ms"]["median"], 2),
            "miou": rows[chosen].get("miou"),
            "cpu": res.get("cpu"),
            "threads": threads,
            "size": list(size),
        },
        "backends": {
            b: {"latency_ms": round(r["latency_ms"]["median"], 2), "miou": r.get("miou")}
            for b, r in rows.items()
        },
        "reference_miou": res["backends"].get("eager", {}).get("miou"),
        "kept_fp32": list((exp.quantization or {}).get("kept_fp32_modules", [])),
        "parity": {"max_abs_diff": exp.max_abs_diff, "pixel_agreement": exp.pixel_agreement},
    }
