"""Command-line interface: parse, call one API function, render.

Every user error (bad argument, unknown model, unreadable file) is reported as one line
``edgeseg: error: ...`` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from edgeseg.errors import EdgesegError

__all__ = ["main"]

log = logging.getLogger("edgeseg")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _size(text: str) -> tuple[int, int]:
    from edgeseg.utils import parse_size

    try:
        return parse_size(text)
    except EdgesegError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--size: ")) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table with right-aligned numbers."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(row):
            numeric = c.replace(".", "", 1).replace(",", "").replace("%", "").isdigit()
            out.append(c.rjust(widths[i]) if numeric and i else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def _emit_json(args: argparse.Namespace, payload: Any) -> bool:
    """Write ``payload`` to ``--out`` if given; print it if ``--json``. True if printed."""
    if args.out:
        from edgeseg.utils import atomic_write_json

        atomic_write_json(args.out, payload)
    if args.json:
        print(json.dumps(payload, indent=2))
    return bool(args.json)


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f}"


# --------------------------------------------------------------------------- commands


#: --flops choice -> (summary key, column label): torch's count and the papers' conventions.
FLOP_CONVENTIONS = {
    "torch": ("flops", "GFLOPs"),
    "squeeze-paper": ("paper_macs", "paper GMACs"),
    "thesis": ("thesis_flops", "thesis GFLOPs"),
}


def _cmd_models(args: argparse.Namespace) -> int:
    from edgeseg.measure.summary import summarize_models
    from edgeseg.models import list_models

    names = list_models(args.pattern)
    if not names:
        raise EdgesegError(f"no model matches {args.pattern!r}")
    rows = summarize_models(names, input_size=args.size, num_classes=args.classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    h, w = args.size
    key, label = FLOP_CONVENTIONS[args.flops]
    print(
        _table(
            [
                (
                    r["name"],
                    r["family"],
                    f"{r['params']:,}",
                    f"{r[key] / 1e9:.2f}",
                    r["summary"],
                )
                for r in rows
            ],
            ("model", "family", "params", f"{label}@{h}x{w}", "description"),
        )
    )
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeseg.deploy.tuning import tune_malloc
    from edgeseg.measure.profiling import profile
    from edgeseg.models import list_models, model_info

    names = args.models or list_models()
    for n in names:
        model_info(n)  # unknown names fail before any time is spent
    if not args.no_malloc_tuning:
        tune_malloc()
    results = []
    for n in names:
        log.info("profiling %s at %dx%d with %d threads", n, *args.size, args.threads)
        results.append(
            profile(
                n,
                args.size,
                num_classes=args.classes,
                threads=args.threads,
                batch_size=args.batch_size,
                warmup=args.warmup,
                repeats=args.repeats,
                fold_bn=not args.no_fold_bn,
            )
        )
    payload: Any = [r.to_dict() for r in results]
    if len(results) == 1 and args.models:
        payload = payload[0]
    if _emit_json(args, payload):
        return 0
    h, w = args.size
    print(f"CPU: {results[0].cpu}; {args.threads} threads; input {h}x{w}, batch {args.batch_size}")
    rows = [
        (
            r.model,
            f"{r.params:,}",
            f"{r.macs / 1e9:.2f}",
            f"{r.paper_macs / 1e9:.1f}",
            _mb(r.size_bytes),
            f"{r.latency_ms['median']:.1f}",
            f"{r.latency_ms['p90']:.1f}",
            r.memory_format,
            _mb(r.peak_memory_bytes),
        )
        for r in results
    ]
    print(
        _table(
            rows,
            (
                "model",
                "params",
                "GMACs",
                "paper GMACs",
                "size MB",
                "median ms",
                "p90 ms",
                "best format",
                "peak MB",
            ),
        )
    )
    for r in results:
        print(f"\n{r.model}: time per stage ({r.memory_format})")
        print(
            _table(
                [(s.name, f"{s.ms:.1f}", f"{100 * s.share:.1f}%") for s in r.stages],
                ("stage", "ms", "share"),
            )
        )
    return 0


def _train_config(args: argparse.Namespace) -> tuple[Any, bool]:
    """Compose the recipe: YAML file (or the resumed run's config.yaml) + key=value overrides."""
    from edgeseg.config import load_config

    items = list(args.items)
    path = None
    if items and "=" not in items[0]:
        path = items.pop(0)
    bad = [i for i in items if "=" not in i]
    if bad:
        raise EdgesegError(f"expected section.key=value overrides after the recipe, got {bad[0]!r}")
    if args.resume:
        run = Path(args.resume)
        if path is not None:
            raise EdgesegError("--resume uses the run's own config.yaml; pass only overrides")
        path = run / "config.yaml"
        if not path.is_file():
            raise EdgesegError(f"cannot resume {run}: no config.yaml there")
        items.append(f"train.out={run}")
    if args.out:
        items.append(f"train.out={args.out}")
    cfg = load_config(path, items)
    cfg.validate()
    return cfg, bool(args.resume)


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeseg.engine.train import train

    cfg, resume = _train_config(args)
    result = train(cfg, resume=resume)
    last = result.history[-1] if result.history else {}
    msg = f"{result.run_dir}: {result.epochs_done} epoch(s)"
    if result.best_miou is not None:
        msg += f", best val mIoU {result.best_miou:.4f} (epoch {result.best_epoch})"
    if last:
        msg += f", last train loss {last['train_loss']:.4f}"
    if result.stopped_by_budget:
        msg += "; stopped by train.max_minutes (resume with --resume)"
    print(msg)
    return 0


def _render_metrics(res: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    head = (
        f"{res['model']} on {res['split']} ({res['num_images']} images): mIoU {pct(res['miou'])}, "
        f"pixel acc {pct(res['pixel_acc'])}, mean acc {pct(res['mean_acc'])}"
    )
    rows = [
        (
            name,
            pct(res["iou"][name]),
            pct(res["tp_rate"][name]),
            "-" if res["fp_tp"][name] is None else f"{res['fp_tp'][name]:.3f}",
        )
        for name in res["iou"]
    ]
    text = head + "\n" + _table(rows, ("class", "IoU %", "TP rate %", "FP/TP"))
    if "batches" in res:
        b = res["batches"]
        rows = []
        for name in res["iou"]:
            cells = [name]
            for metric in ("tp_rate", "iou", "fp_tp"):
                s = b[metric][name]
                cells.append(
                    "-"
                    if s["mean"] is None
                    else f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"
                )
            rows.append(cells)
        text += (
            f"\n\nper batch of {b['batch_size']} ({b['count']} batches): mean [min, max]\n"
            + _table(rows, ("class", "TP rate", "IoU", "FP/TP"))
        )
    return text


def _cmd_eval(args: argparse.Namespace) -> int:
    from edgeseg.engine.evaluate import evaluate

    res = evaluate(
        args.checkpoint,
        args.data,
        args.split,
        info=args.preset,
        input_size=args.size,
        batch_size=args.batch_size,
        paper_protocol=args.paper_protocol,
        threads=args.threads,
    )
    if not _emit_json(args, res):
        print(_render_metrics(res))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from edgeseg.deploy.segmenter import predict_paths

    if args.model:
        checkpoint, inputs = args.model, args.paths
    else:
        if len(args.paths) < 2:
            raise EdgesegError(
                "predict: give CHECKPOINT and IMAGES, or --model NAME (shipped weights) and IMAGES"
            )
        checkpoint, inputs = args.paths[0], args.paths[1:]
    written = predict_paths(
        checkpoint,
        inputs,
        args.out,
        alpha=args.alpha,
        threads=args.threads,
        input_size=args.size,
        backend=args.backend,
        calibration=args.calib_data,
    )
    print(f"segmented {len(written)} image(s): labels and overlays in {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edgeseg.workflows.export import export_checkpoint

    res = export_checkpoint(
        args.checkpoint,
        args.out,
        input_size=args.size,
        opset=args.opset,
        data=args.data,
        split=args.split,
        check_images=args.check_images,
        int8=args.format == "onnx-int8",
        calib_images=args.calib_images,
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    from edgeseg.measure.counts import zip_size

    print(
        f"wrote {res.path} ({res.precision}, {_mb(res.size_bytes)} MB, zipped "
        f"{_mb(zip_size(res.path))} MB; opset {res.opset}, {res.exporter} exporter, dynamic "
        f"batch/height/width)\n"
        f"parity with PyTorch fp32 on {res.check_images} {res.check_source} image(s): max "
        f"|logit diff| {res.max_abs_diff:.2e}, pixel agreement {100 * res.pixel_agreement:.3f} %"
    )
    if res.quantization:
        q = res.quantization
        print(
            f"int8: {q['quantized_layers']} layers quantized, {len(q['fp32_layers'])} left in "
            f"fp32 ({', '.join(q['fp32_layers'][:4]) or 'none'}); fp32 file "
            f"{_mb(res.fp32_size_bytes)} MB"
        )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgeseg.measure.bench import bench

    res = bench(
        args.source,
        size=args.size,
        threads=args.threads,
        backends=args.backends.split(","),
        num_classes=args.classes,
        iterations=args.iterations,
        warmup=args.warmup,
        repeats=args.repeats,
        data=args.data,
        split=args.split,
        eval_images=args.eval_images,
        calib_data=args.calib_data,
        calib_images=args.calib_images,
        budget_miou=args.budget / 100,
        workdir=args.keep,
    )
    if _emit_json(args, res):
        return 0
    h, w = res["size"]
    print(f"{res['source']} at {h}x{w}, {res['threads']} threads, {res['cpu']}")
    rows = []
    for name, r in res["backends"].items():
        rows.append(
            (
                name,
                f"{r['latency_ms']['median']:.1f}",
                f"{r['latency_ms']['p90']:.1f}",
                f"{r['images_per_s']:.2f}",
                f"{r.get('speedup', float('nan')):.2f}",
                _mb(r["peak_rss_bytes"]),
                _mb(r["size_bytes"]) if "size_bytes" in r else "-",
                _mb(r["zip_bytes"]) if "zip_bytes" in r else "-",
                f"{r['miou']:.4f}" if "miou" in r else "-",
                f"{100 * r['pixel_agreement']:.2f}" if "pixel_agreement" in r else "-",
            )
        )
    print(
        _table(
            rows,
            (
                "backend",
                "median ms",
                "p90 ms",
                "img/s",
                "x eager",
                "peak RSS MB",
                "file MB",
                "zip MB",
                "mIoU",
                "agree %",
            ),
        )
    )
    for method, q in res["quantization"].items():
        kept = ", ".join(q["fp32_layers"][:6]) + (" ..." if len(q["fp32_layers"]) > 6 else "")
        print(
            f"{method}: {q['quantized_layers']} layers int8, {len(q['fp32_layers'])} fp32"
            + (f" ({kept})" if kept else "")
        )
    for name, err in res.get("errors", {}).items():
        print(f"{name}: not available for this model ({err})")
    print(f"best: {res['best']} ({res['best_reason']})")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from edgeseg.workflows.compress import compress_checkpoint

    rep = compress_checkpoint(
        args.checkpoint,
        args.method,
        args.out,
        data=args.data,
        epochs=args.epochs,
        ratio=args.ratio,
        sparsity=args.sparsity,
        groups=args.groups,
        round_to=args.round_to,
        size=args.size,
        threads=args.threads,
        backends=tuple(b for b in args.backends.split(",") if b),
        overrides=args.overrides,
    )
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    rows = []
    for when in ("before", "after"):
        r = rep[when]
        rows.append(
            (
                when,
                f"{r['params']:,}",
                f"{r['macs'] / 1e9:.2f}",
                f"{100 * r['sparsity']:.1f}",
                _mb(r["file_bytes"]),
                _mb(r["zip_bytes"]),
                _mb(r["int8_onnx_zip_bytes"]) if "int8_onnx_zip_bytes" in r else "-",
                f"{r['best_ms']:.1f} ({r['best_backend']})" if "best_ms" in r else "-",
                f"{r['miou']:.4f}" if r.get("miou") is not None else "-",
            )
        )
    header = ("", "params", "GMACs", "zeros %", "file MB", "zip MB", "int8 zip MB",
              "best ms", "mIoU")  # fmt: skip
    print(f"{rep['method']} {rep['model']} ({rep['source']})")
    print(_table(rows, header))
    print(", ".join(f"{k} {v:.3f}" for k, v in rep["ratios"].items()))
    print(f"compressed checkpoint: {Path(args.out) / 'compressed.pt'}; report: report.json")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from edgeseg.workflows.compare import compare, demo_config, load_compare_config

    logging.getLogger("edgeseg").setLevel(logging.INFO)  # progress is the point here
    if args.demo:
        from edgeseg.data.synthetic import make_street_dataset

        if args.config or args.data:
            raise EdgesegError("--demo makes its own data and models; drop --config/--data")
        cfg = demo_config(args.out or "compare-demo")
        if not (Path(cfg.recipe.data.root) / "val.txt").is_file():
            make_street_dataset(cfg.recipe.data.root)
        if args.models:
            cfg.models = [m for m in args.models.split(",") if m]
        if args.budget:
            cfg.budget = args.budget
    else:
        cfg = load_compare_config(args.config, args.overrides)
        if args.models:
            cfg.models = [m for m in args.models.split(",") if m]
        if args.data:
            cfg.recipe.data.root = args.data
        if args.preset:
            cfg.recipe.data.preset = args.preset
        if args.budget:
            cfg.budget = args.budget
        if args.out:
            cfg.out = args.out
        if args.size:
            cfg.size = args.size
        if args.backends:
            cfg.backends = args.backends.split(",")
        if not cfg.recipe.data.root:
            raise EdgesegError("--data: give the data root (or recipe.data.root in --config)")
    if args.threads:
        cfg.threads = args.threads
    res = compare(cfg)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    from edgeseg.workflows.report import report_tables

    header, rows = report_tables(res)["Accuracy and cost"]
    print(_table(rows, header))
    failed = [m for m in res["models"].values() if m.get("status") == "failed"]
    for m in failed:
        print(f"{m['name']}: failed ({m.get('error')})")
    print(f"report: {Path(cfg.out) / 'report.html'} and report.md; results: results.json")
    return 1 if failed else 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeseg`` argument parser (exposed for docs and tests)."""
    from edgeseg import __version__

    p = _Parser(prog="edgeseg", description="Efficient semantic segmentation on CPUs.")
    p.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    m = sub.add_parser("models", help="list registered models with parameters and FLOPs")
    m.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'squeeze*'")
    m.add_argument("--size", type=_size, default=(360, 480), help="HxW for the FLOPs (360x480)")
    m.add_argument("--classes", type=_positive, default=11, help="number of classes (11)")
    m.add_argument(
        "--flops",
        choices=sorted(FLOP_CONVENTIONS),
        default="torch",
        help="operation count shown: torch (2 x MACs, flop_counter), squeeze-paper "
        "(2 x W x output pixels) or thesis (conv MACs + 2 x transposed-conv MACs)",
    )
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("profile", help="measure size, FLOPs, latency, memory, stage times")
    pr.add_argument("models", nargs="*", help="registered model names (default: all)")
    pr.add_argument("--size", type=_size, default=(360, 480), help="input HxW (360x480)")
    pr.add_argument("--classes", type=_positive, default=11, help="number of classes (11)")
    pr.add_argument("--threads", type=_positive, default=2, help="intra-op threads (2)")
    pr.add_argument("--batch-size", type=_positive, default=1, help="images per pass (1)")
    pr.add_argument("--warmup", type=_positive, default=2, help="untimed runs per format (2)")
    pr.add_argument("--repeats", type=_positive, default=10, help="timed runs per format (10)")
    pr.add_argument("--no-fold-bn", action="store_true", help="time with BatchNorm unfolded")
    pr.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's allocator at its defaults"
    )
    pr.add_argument("--json", action="store_true", help="print JSON instead of tables")
    pr.add_argument("--out", default=None, help="also write the JSON to this file")
    pr.set_defaults(func=_cmd_profile)

    t = sub.add_parser(
        "train",
        help="train a model from a YAML recipe with key=value overrides",
        description="edgeseg train [RECIPE.yaml] [section.key=value ...]; under torchrun it "
        "trains with DistributedDataParallel.",
    )
    t.add_argument("items", nargs="*", help="RECIPE.yaml then overrides like train.epochs=3")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (last.pt)")
    t.add_argument("--out", help="run directory (same as train.out=...)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a data split (every paper metric)")
    e.add_argument("checkpoint", help="checkpoint file or run directory (uses best.pt)")
    e.add_argument("--data", required=True, help="data root")
    e.add_argument("--split", default="val", help="split to evaluate (val)")
    e.add_argument("--preset", default=None, help="dataset preset (default: the checkpoint's)")
    e.add_argument("--size", type=_size, default=None, help="resize images to HxW (native)")
    e.add_argument("--batch-size", type=_positive, default=8, help="images per pass (8)")
    e.add_argument("--threads", type=_positive, default=None, help="intra-op threads")
    e.add_argument(
        "--paper-protocol",
        action="store_true",
        help="add Squeeze U-Net's per-batch-of-8 mean/max/min statistics (its Table 7)",
    )
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--out", default=None, help="also write the JSON to this file")
    e.set_defaults(func=_cmd_eval)

    pd = sub.add_parser("predict", help="write label PNGs and colour overlays for images")
    pd.add_argument(
        "paths",
        nargs="+",
        metavar="[CHECKPOINT] IMAGE",
        help="checkpoint file, run directory or .onnx, then images or folders of images",
    )
    pd.add_argument(
        "--model", default=None, help="shipped weights instead of a checkpoint: segfast_camvid"
    )
    pd.add_argument("--out", default="predictions", help="output folder (predictions)")
    pd.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (0.5)")
    pd.add_argument("--size", type=_size, default=None, help="run the network at HxW")
    pd.add_argument("--threads", type=_positive, default=None, help="intra-op threads")
    pd.add_argument(
        "--backend",
        default=None,
        help="eager, channels_last (default), compile, ort, ort-int8 or pt2e-int8",
    )
    pd.add_argument("--calib-data", default=None, help="data root calibrating the int8 backends")
    pd.set_defaults(func=_cmd_predict)

    ex = sub.add_parser("export", help="export a checkpoint to ONNX and check it against PyTorch")
    ex.add_argument("checkpoint", help="checkpoint file or run directory")
    ex.add_argument(
        "--format",
        choices=["onnx", "onnx-int8"],
        default="onnx",
        help="onnx (fp32) or onnx-int8 (ORT static int8, calibrated on --data's train split)",
    )
    ex.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    ex.add_argument("--opset", type=_positive, default=18, help="ONNX opset, >= 17 (18)")
    ex.add_argument("--size", type=_size, default=None, help="example/check HxW (checkpoint's)")
    ex.add_argument("--data", default=None, help="data root: check parity on real images")
    ex.add_argument("--split", default="val", help="split of --data for the check (val)")
    ex.add_argument("--check-images", type=_positive, default=4, help="images to check (4)")
    ex.add_argument("--calib-images", type=_positive, default=32, help="int8 calibration (32)")
    ex.add_argument("--json", action="store_true", help="print the result as JSON")
    ex.set_defaults(func=_cmd_export)

    b = sub.add_parser(
        "bench",
        help="latency, memory, size and accuracy of every CPU backend, each in a fresh process",
    )
    b.add_argument("source", help="model name, checkpoint / run directory, or .onnx file")
    b.add_argument("--size", type=_size, default=(360, 480), help="input HxW (360x480)")
    b.add_argument("--threads", type=_positive, default=2, help="intra-op threads (2)")
    b.add_argument(
        "--backends",
        default="eager,channels_last,compile,ort,ort-int8,pt2e-int8",
        help="comma-separated subset of eager,channels_last,compile,ort,ort-int8,pt2e-int8",
    )
    b.add_argument(
        "--classes", type=_positive, default=None, help="K (model name: 11; files: checked)"
    )
    b.add_argument("--iterations", type=_positive, default=10, help="timed runs per process")
    b.add_argument("--warmup", type=_positive, default=3, help="untimed runs per process (3)")
    b.add_argument("--repeats", type=_positive, default=3, help="processes per backend (3)")
    b.add_argument("--data", default=None, help="data root: mIoU of each backend on --split")
    b.add_argument("--split", default="val", help="split of --data for accuracy (val)")
    b.add_argument("--eval-images", type=_positive, default=None, help="limit accuracy images")
    b.add_argument("--calib-data", default=None, help="calibration root (default: --data)")
    b.add_argument("--calib-images", type=_positive, default=32, help="calibration images (32)")
    b.add_argument("--budget", type=float, default=1.0, help="max mIoU points lost by 'best' (1.0)")
    b.add_argument("--keep", default=None, help="keep the artefacts (ONNX fp32/int8) here")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--out", default=None, help="also write the JSON to this file")
    b.set_defaults(func=_cmd_bench)

    z = sub.add_parser(
        "compress", help="prune, sparsify or group a checkpoint, fine-tune, report the gains"
    )
    z.add_argument("checkpoint", help="checkpoint file, run directory or shipped weights name")
    z.add_argument("--method", required=True, help="prune | sparsify | group")
    z.add_argument("--out", required=True, help="output folder (compressed.pt, report.json)")
    z.add_argument("--data", default=None, help="data root (default: the recipe's)")
    z.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs (prune: may be 0)")
    z.add_argument("--ratio", type=float, default=0.5, help="prune: channels removed (0.5)")
    z.add_argument("--sparsity", type=float, default=0.6, help="sparsify: zeros (0.6)")
    z.add_argument("--groups", type=int, default=2, help="group: g (2)")
    z.add_argument("--round-to", type=_positive, default=8, help="prune: keep multiples (8)")
    z.add_argument("--size", type=_size, default=(360, 480), help="MACs/latency HxW")
    z.add_argument("--threads", type=_positive, default=2, help="threads (2)")
    z.add_argument("--backends", default="channels_last,ort", help="backends timed ('' none)")
    z.add_argument("--json", action="store_true", help="print the report as JSON")
    z.add_argument("overrides", nargs="*", help="fine-tuning recipe: optim.lr=2e-4 ...")
    z.set_defaults(func=_cmd_compress)

    c = sub.add_parser(
        "compare",
        help="train, evaluate, profile and benchmark several models; write a report",
    )
    c.add_argument("--models", default=None, help="comma-separated: zoo names, "
                   "torchvision:NAME, NAME=CHECKPOINT (already trained)")  # fmt: skip
    c.add_argument("--data", default=None, help="data root (recipe.data.root)")
    c.add_argument("--preset", default=None, help="camvid | cityscapes | coco_super | custom")
    c.add_argument("--budget", default=None, help="training time per model: 90s, 20m, 1.5h")
    c.add_argument("--out", default=None, help="output folder (compare)")
    c.add_argument("--size", type=_size, default=None, help="profile/bench HxW (val images')")
    c.add_argument("--threads", type=_positive, default=None, help="threads (2)")
    c.add_argument("--backends", default=None, help="benchmarked backends (comma-separated)")
    c.add_argument("--config", default=None, help="YAML comparison (CompareConfig)")
    c.add_argument("--demo", action="store_true",
                   help="generated street scenes, three light models, 100 s each")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print results.json")
    c.add_argument("overrides", nargs="*", help="key=value: budget=5m recipe.optim.lr=1e-3")
    c.set_defaults(func=_cmd_compare)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeseg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except EdgesegError as e:
        print(f"edgeseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
