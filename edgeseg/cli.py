"""Command-line interface: parse, call one API function, render.

Every user error (bad argument, unknown model, unreadable file) is reported as one line
``edgeseg: error: ...`` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeseg_runtime.cli import OneLineParser

from edgeseg import defaults as D
from edgeseg.cli_args import api_flag
from edgeseg.errors import EdgesegError
from edgeseg.utils import text_table

__all__ = ["main"]

log = logging.getLogger("edgeseg")


def _size(text: str) -> tuple[int, int]:
    from edgeseg.utils import parse_size

    try:
        return parse_size(text)
    except EdgesegError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--size: ")) from None


def _threads(text: str) -> int:
    n, cpus = _positive(text), os.cpu_count() or 1
    if n > cpus:  # refused at once: thousands of threads make every run crawl
        raise argparse.ArgumentTypeError(f"{n} is more than this machine's {cpus} logical CPUs")
    return n


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _emit_json(args: argparse.Namespace, payload: Any) -> bool:
    """``--json``: print ``payload`` (True: nothing else to print); ``--json FILE``: write
    it there and let the command print its tables as usual."""
    if args.json is None:
        return False
    if args.json == "-":
        print(json.dumps(payload, indent=2))
        return True
    from edgeseg.utils import atomic_write_json

    atomic_write_json(args.json, payload)
    return False


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
    from edgeseg.pretrained import PRETRAINED, list_pretrained

    names = list_models(args.pattern)
    installed = list_pretrained()  # weights present in this installation, not only declared
    shipped = {n: [w for w in installed if PRETRAINED[w].model == n] for n in names}
    if args.latency and not args.pretrained:
        raise EdgesegError("--latency: times the shipped weights; add --pretrained")
    if args.pretrained:
        names = [n for n in names if shipped[n]]
    if not names:
        raise EdgesegError(f"no model matches {args.pattern!r}")
    rows = summarize_models(names, input_size=args.size, num_classes=args.classes)
    for r in rows:
        r["pretrained"] = shipped[r["name"]]
    if _emit_json(args, rows):
        return 0
    if args.pretrained:
        print(_pretrained_table(installed, args))
        return 0
    h, w = args.size
    key, label = FLOP_CONVENTIONS[args.flops]
    table = [
        (
            r["name"],
            r["family"],
            f"{r['params']:,}",
            f"{r[key] / 1e9:.2f}",
            ", ".join(r["pretrained"]) or "-",
            r["summary"],
        )
        for r in rows
    ]
    header = ("model", "family", "params", f"{label}@{h}x{w}", "shipped weights", "description")
    print(text_table(table, header))
    return 0


def _pretrained_table(installed: list[str], args: argparse.Namespace) -> str:
    """``models --pretrained``: each shipped weights' held-out accuracy, size, latency here
    (``--latency``) and the recommended pick."""
    from edgeseg.cpu import cpu_name
    from edgeseg.measure.timing import pretrained_latency
    from edgeseg.pretrained import PRETRAINED, WEIGHTS_DIR, recommended

    pick = recommended()
    ms = pretrained_latency(installed, args.size, args.threads) if args.latency else {}
    rows = []
    for n in sorted(installed, key=lambda n: -(PRETRAINED[n].heldout_miou or 0.0)):
        p = PRETRAINED[n]
        miou = f"{p.heldout_miou:.3f}" if p.heldout_miou else "-"
        mb = (WEIGHTS_DIR / p.file).stat().st_size / 2**20
        row = (n + (" (recommended)" if n == pick else ""), p.model, miou, f"{mb:.1f}")
        rows.append((*row, *([f"{ms[n]:.1f}"] if ms else []), p.recipe))
    h, w = args.size
    here = f"ms {h}x{w} here" if ms else None
    header = ("weights", "model", "val mIoU (train-only)", "MB", *([here] if ms else []), "recipe")
    if ms:
        note = (
            f"\nLatency: median of one forward pass on {cpu_name()}, {args.threads} "
            "threads, PyTorch channels-last (what Segmenter runs by default); "
            "`edgeseg bench NAME` measures every backend, int8 included."
        )
    else:
        note = (
            "\nLatency depends on the CPU: --latency measures each here, `edgeseg bench "
            "NAME` every backend."
        )
    return text_table(rows, header) + note + " The model card: edgeseg/weights/README.md."


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeseg.deploy.tuning import tune_malloc
    from edgeseg.measure.profiling import profile
    from edgeseg.models import list_models, model_info

    files = [m for m in args.models if m.endswith(".onnx")]
    if files or args.engine:
        return _profile_layers(files, args)
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
                peak=not args.no_peak,
            )
        )
    payload: Any = [r.to_dict() for r in results]
    if len(results) == 1 and args.models:
        payload = payload[0]
    if _emit_json(args, payload):
        return 0
    _print_profile(results, args)
    return 0


def _profile_layers(files: list[str], args: argparse.Namespace) -> int:
    """``edgeseg profile FILE.onnx --engine E``: per-layer times inside the engine."""
    from edgeseg.measure.layers import profile_layers

    if not files or len(files) != len(args.models):
        raise EdgesegError("--engine profiles ONNX files: give only .onnx files, no model names")
    results = [
        profile_layers(
            f,
            args.engine or "ort",
            args.size,
            threads=args.threads,
            warmup=args.warmup,
            runs=args.repeats,
            peak=not args.no_peak,
        )
        for f in files
    ]
    payload: Any = [r.to_dict() for r in results]
    if _emit_json(args, payload[0] if len(payload) == 1 else payload):
        return 0
    for r in results:
        print(f"{r.file}\n{r.table()}")
        if slow := r.slow():
            names = ", ".join(f"{x.name} ({_pct(x.peak_fraction)})" for x in slow[:8])
            print(f"far below their precision's peak, >= 3 % of the time: {names}")
    return 0


def _print_profile(results: list[Any], args: argparse.Namespace) -> None:
    """``edgeseg profile``'s tables: the models, then each one's stages."""
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
            _pct(r.peak_fraction),
        )
        for r in results
    ]
    print(
        text_table(
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
                "% fp32 peak",
            ),
        )
    )
    if results[0].peak_gflops:
        print(f"fp32 peak of this CPU on {args.threads} threads: {results[0].peak_gflops:.0f}")
    for r in results:
        print(f"\n{r.model}: time per stage ({r.memory_format})")
        rows = [
            (
                s.name,
                f"{s.ms:.1f}",
                f"{100 * s.share:.1f}%",
                f"{s.gflops:.1f}",
                _pct(s.peak_fraction),
            )
            for s in r.stages
        ]
        print(text_table(rows, ("stage", "ms", "share", "GFLOP/s", "% peak")))
        if slow := _slow_stages(r):
            print(f"far below the fp32 peak (< {SLOW_STAGE:.0%}, >= 10 % of the time): {slow}")


#: A stage attaining less than this share of the CPU's peak is named by ``edgeseg profile``.
SLOW_STAGE = 0.10


def _slow_stages(r: Any) -> str:
    """The stages that take a tenth of the time or more at under :data:`SLOW_STAGE` of the
    peak: where a faster kernel, layout or precision would pay."""
    slow = [
        f"{s.name} ({100 * s.peak_fraction:.0f} %)"
        for s in r.stages
        if s.peak_fraction is not None and s.peak_fraction < SLOW_STAGE and s.share >= 0.1
    ]
    return ", ".join(slow)


def _pct(fraction: float | None) -> str:
    return f"{100 * fraction:.0f}%" if fraction is not None else "-"


def _train_config(args: argparse.Namespace) -> tuple[Any, bool]:
    """Compose the recipe: ``--recipe`` (or the resumed run's config.yaml), then the
    common flags, then ``section.key=value`` overrides (later wins)."""
    from edgeseg.config import load_config

    items = list(args.items)
    path = args.recipe
    if items and "=" not in items[0] and path is None:
        path = items.pop(0)  # edgeseg train RECIPE.yaml ...
    bad = [i for i in items if "=" not in i]
    if bad:
        raise EdgesegError(f"expected section.key=value overrides, got {bad[0]!r}")
    flags = []
    if args.resume:
        run = Path(args.resume)
        if path is not None:
            raise EdgesegError("--resume uses the run's own config.yaml; pass only overrides")
        path = run / "config.yaml"
        if not path.is_file():
            raise EdgesegError(f"cannot resume {run}: no config.yaml there")
        flags.append(f"train.out={run}")
    if args.model:
        flags.append(f"model.name={args.model}")
    if args.data:
        flags.append(f"data.root={args.data}")  # its class file is read by the API
    if args.epochs:
        flags.append(f"train.epochs={args.epochs}")
    if args.out:
        flags.append(f"train.out={args.out}")
    cfg = load_config(path, flags + items)
    cfg.validate()
    return cfg, bool(args.resume)


#: ``train --time`` without ``--epochs``: the time decides, up to this many epochs.
TIME_EPOCH_CAP = 10_000


def _plan_time(cfg: Any, text: str, capped: bool) -> None:
    """``train --time``: fit the recipe to the budget (the planner compare uses), saying
    what it planned before anything long runs; ``--epochs`` (``capped``) is the most it
    may plan, else the time alone decides."""
    from edgeseg.data import build_dataset
    from edgeseg.engine.budget import check_data, fit_to_budget, fit_to_work, parse_budget
    from edgeseg.utils import format_duration

    budget = parse_budget(text, "--time")
    if budget.kind != "time":
        info, _ = check_data(cfg)
        splits = cfg.data.train_split.split("+")
        n = sum(len(build_dataset(cfg.data.root, s, info)) for s in splits)
        print(f"planned: {fit_to_work(cfg, budget, n)} epochs ({budget})", flush=True)
        return
    if not capped:
        cfg.train.epochs = TIME_EPOCH_CAP
    plan = fit_to_budget(cfg, budget.value, flag="--time")
    print(
        f"planned: {plan['epochs']} epochs of {plan['steps_per_epoch']} steps "
        f"({plan['step_s']:.2f} s a step here) in {format_duration(budget.value)}, "
        f"validating every {plan['eval_every']}",
        flush=True,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeseg.engine.train import train

    cfg, resume = _train_config(args)
    if args.time:
        if resume:
            raise EdgesegError("--time plans a new run; a resumed run keeps its plan")
        _plan_time(cfg, args.time, capped=args.epochs is not None)
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
        print(res.table())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from edgeseg.deploy.segmenter import predict_on_ray, predict_paths

    if args.model:
        checkpoint, inputs = args.model, args.paths
    else:
        if len(args.paths) < 2:
            raise EdgesegError(
                "predict: give CHECKPOINT and IMAGES, or --model NAME (shipped weights) and IMAGES"
            )
        checkpoint, inputs = args.paths[0], args.paths[1:]
    common = dict(
        threads=args.threads,
        input_size=args.size,
        backend=args.backend,
        calibration=args.calib_data,
        alpha=args.alpha,
        legend=args.legend,
        overlays=not args.no_overlays,
        overwrite=args.overwrite,
    )
    if args.ray is None:
        written = predict_paths(checkpoint, inputs, args.out, **common)
        print(f"segmented {len(written)} image(s): labels and overlays in {args.out}")
        return 0
    from edgeseg_runtime.scale import summary_line

    res = predict_on_ray(
        checkpoint,
        inputs,
        args.out,
        address=args.ray,
        actors=args.actors,
        progress=sys.stderr.isatty(),
        **common,
    )
    print(summary_line(res, args.out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edgeseg.workflows.export import export_checkpoint, export_litert_checkpoint

    if args.bundle:
        return _export_bundle(args)
    common = {
        "input_size": args.size,
        "data": args.data,
        "split": args.split,
        "check_images": args.check_images,
        "int8": _int8_options(args),
    }
    if args.format.startswith("litert"):
        if args.output not in (None, "logits"):
            raise EdgesegError("--output: a LiteRT file outputs logits (label outputs are ONNX's)")
        res = export_litert_checkpoint(args.checkpoint, args.out, **common)
    else:
        res = export_checkpoint(
            args.checkpoint, args.out, opset=args.opset, output=args.output or "logits", **common
        )
    if _emit_json(args, res.to_dict()):
        return 0
    _print_export(res, args.overwrite)
    return 0


def _int8_options(args: argparse.Namespace) -> Any:
    """The export's int8 options from ``--format`` and its flags (``None``: fp32)."""
    from edgeseg.workflows.export import Int8Options

    if not args.format.endswith(("int8", "int8-nncf")):
        return None
    return Int8Options(
        "nncf" if args.format == "onnx-int8-nncf" else "ort",
        calib_images=args.calib_images,
        mixed_precision=bool(args.mixed_precision),
        budget_miou=args.accuracy_budget,
    )


def _print_export(res: Any, overwrite: bool = False) -> None:
    from edgeseg.measure.counts import zip_size

    diff = "" if res.max_abs_diff is None else f"max |logit diff| {res.max_abs_diff:.2e}, "
    what = (
        f"{res.precision} LiteRT, {_mb(res.size_bytes)} MB; {res.exporter}"
        if res.opset == 0
        else f"{res.precision}, output {res.output}, {_mb(res.size_bytes)} MB, zipped "
        f"{_mb(zip_size(res.path))} MB; opset {res.opset}, {res.exporter} exporter, dynamic "
        "batch/height/width"
    )
    print(
        f"wrote {res.path} ({what})\nparity with PyTorch fp32 on {res.check_images} "
        f"{res.check_source} image(s): {diff}pixel agreement {100 * res.pixel_agreement:.3f} %"
    )
    if res.quantization:
        q = res.quantization
        print(
            f"int8: {q['quantized_layers']} layers quantized, {len(q['fp32_layers'])} left in "
            f"fp32 ({', '.join(q['fp32_layers'][:4]) or 'none'}); fp32 file "
            f"{_mb(res.fp32_size_bytes)} MB"
        )
        plot = Path(res.path).with_suffix(".sensitivity.png")
        _print_mixed({"int8": q}, Path(res.path).stem, plot, overwrite)


def _export_bundle(args: argparse.Namespace) -> int:
    from edgeseg.workflows.export import export_bundle

    if args.format != "onnx":
        raise EdgesegError("--bundle picks fp32 or int8 itself (the bench rule); drop --format")
    card = export_bundle(
        args.checkpoint,
        args.bundle,
        data=args.data,
        split=args.split,
        input_size=args.size,
        threads=args.threads,
        calib_images=args.calib_images,
        budget_miou=args.accuracy_budget,
        mixed_precision=args.mixed_precision is not False,
        output=args.output,
    )
    if _emit_json(args, card):
        return 0
    m = card["measured"]
    miou = f", mIoU {m['miou']:.4f}" if m.get("miou") is not None else ""
    print(
        f"wrote bundle {args.bundle}: model.onnx ({card['precision']}, output "
        f"{card['output']}), model.json, "
        f"README.md; {m['backend']} {m['latency_ms']:.1f} ms here{miou}\n"
        f"run it: edgeseg-run predict {args.bundle} IMAGES --out DIR"
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgeseg.measure.bench import bench

    res = bench(
        args.source,
        size=args.size,
        threads=args.threads,
        backends=args.backends or None,
        num_classes=args.classes,
        iterations=args.iterations,
        warmup=args.warmup,
        repeats=args.repeats,
        data=args.data,
        split=args.split,
        eval_images=args.eval_images,
        calib_data=args.calib_data,
        calib_images=args.calib_images,
        budget_miou=args.accuracy_budget,
        mixed_precision=bool(args.mixed_precision),
        workdir=args.keep,
        peak=not args.no_peak,
    )
    if _emit_json(args, res):
        return 0
    print(res.table())
    plot = Path(args.keep) / "int8_sensitivity.png" if args.keep else None
    _print_mixed(res["quantization"], str(res["source"]), plot, True)
    return 0


def _print_mixed(
    quant: dict[str, Any], name: str = "", plot: Path | None = None, overwrite: bool = False
) -> None:
    """The mixed-precision search's outcome and sensitivity table, once per file, and its
    figure at ``plot`` (not over a file that exists, unless ``overwrite``)."""
    from edgeseg.deploy.mixed import Sensitivity
    from edgeseg.workflows.report import write_sensitivity_png

    mixed = next((q["mixed"] for q in quant.values() if q.get("mixed")), None)
    if mixed is None:
        return
    if mixed.get("sensitivity"):
        print("int8 sensitivity (mIoU points; each module alone in int8 / alone in fp32):")
        print(Sensitivity.from_dict(mixed["sensitivity"]).table())
        if plot is not None and (overwrite or not plot.exists()):
            print(f"int8 sensitivity figure: {write_sensitivity_png(name, mixed, plot)}")
    kept = ", ".join(mixed["kept_fp32"]) or "none"
    verdict = "within" if mixed["met"] else "NOT within (no mix meets it; fp32 preferred)"
    print(
        f"mixed precision: kept in fp32: {kept}; mIoU {mixed['miou']:.4f} against fp32 "
        f"{mixed['fp32_miou']:.4f} (all-int8 {mixed['int8_miou']:.4f}), {verdict} the "
        f"budget of {mixed['budget']:.3f}"
    )


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
        backends=args.backends,
        overrides=args.overrides,
    )
    if _emit_json(args, rep):
        return 0
    print(rep.table())
    print(f"compressed checkpoint: {Path(args.out) / 'compressed.pt'}; report: report.json")
    return 0


def _compare_flags(args: argparse.Namespace) -> list[str]:
    """The compare flags as the config's own ``key=value`` overrides (one code path)."""
    items = []
    if args.models:
        items.append(f"models={json.dumps([m for m in args.models.split(',') if m])}")
    for key, flag, value in (
        ("recipe.data.root", "--data", args.data),
        ("recipe.data.preset", "--preset", args.preset),
        ("budget", "--budget", args.budget),
        ("out", "--out", args.out),
        ("threads", "--threads", args.threads),
        ("ray", "--ray", args.ray),
        ("bench_node", "--bench-node", args.bench_node),
    ):
        if isinstance(value, str) and not value.strip():  # '' would mean "the default"
            raise EdgesegError(f"{flag} {value!r}: give a value (or leave the flag out)")
        if value:
            items.append(f"{key}={value}")
    if args.size:
        items.append(f"size={list(args.size)}")
    if args.backends:
        items.append(f"backends={json.dumps(args.backends.split(','))}")
    if args.accuracy_budget is not None:
        items.append(f"accuracy_budget={args.accuracy_budget}")
    if args.mixed_precision is not None:
        items.append(f"mixed_precision={str(args.mixed_precision).lower()}")
    return items


def _cmd_compare(args: argparse.Namespace) -> int:
    from edgeseg.workflows.compare import (
        compare,
        demo_config,
        demo_data,
        load_compare_config,
        with_overrides,
    )

    logging.getLogger("edgeseg").setLevel(logging.INFO)  # progress is the point here
    items = _compare_flags(args) + list(args.overrides)
    if args.demo:
        if args.config or args.data:
            raise EdgesegError("--demo makes its own data and models; drop --config/--data")
        cfg = with_overrides(demo_config(args.out or "compare-demo"), items)
        demo_data(cfg)
    else:
        cfg = load_compare_config(args.config, items)
        if not cfg.recipe.data.root:
            raise EdgesegError("--data: give the data root (or recipe.data.root in --config)")
    res = compare(cfg)
    if _emit_json(args, res):
        return 0
    print(res.table())
    print(f"report: {Path(cfg.out) / 'report.html'} and report.md; results: results.json")
    return 1 if res.failed else 0


# --------------------------------------------------------------------------- parser
# One ``_add_<command>`` per subcommand; defaults and choices come from edgeseg.defaults
# (the API's own), and a flag name means the same thing in every subcommand:
#   --out      where the command writes what it makes (run dir, folder or ONNX file)
#   --json     print JSON; --json FILE writes it to FILE instead
#   --budget   training budget (compare); --accuracy-budget: mIoU a backend may lose (bench)
#   --data     a data root (list files, or images/ + masks/ folders)

_SIZE_HELP = f"input HxW ({D.INPUT_SIZE[0]}x{D.INPUT_SIZE[1]})"


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print the result as JSON (or write it to FILE)",
    )
    _overwrite_flag(p)


def _overwrite_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (else refused)"
    )


def _peak_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-peak",
        action="store_true",
        help="skip measuring this CPU's arithmetic peak (a few seconds; see `edgeseg peak`)",
    )


def _timing_flags(p: argparse.ArgumentParser, size: bool = True) -> None:
    if size:
        p.add_argument("--size", type=_size, default=D.INPUT_SIZE, help=_SIZE_HELP)
    p.add_argument(
        "--threads", type=_threads, default=D.THREADS, help=f"intra-op threads ({D.THREADS})"
    )


def _add_models(sub: Any) -> None:
    m = sub.add_parser("models", help="list models, their cost and shipped weights")
    m.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'squeeze*'")
    m.add_argument("--size", type=_size, default=D.INPUT_SIZE, help="HxW for the FLOPs")
    m.add_argument(
        "--classes",
        type=_positive,
        default=D.NUM_CLASSES,
        help=f"number of classes ({D.NUM_CLASSES})",
    )
    m.add_argument(
        "--flops",
        choices=sorted(FLOP_CONVENTIONS),
        default="torch",
        help="operation count shown: torch (2 x MACs, flop_counter), squeeze-paper "
        "(2 x W x output pixels) or thesis (conv MACs + 2 x transposed-conv MACs)",
    )
    m.add_argument("--pretrained", action="store_true", help="only models with shipped weights")
    m.add_argument(
        "--latency",
        action="store_true",
        help="with --pretrained: time each shipped model here (a few seconds each)",
    )
    m.add_argument(
        "--threads",
        type=_threads,
        default=D.THREADS,
        help=f"intra-op threads of --latency ({D.THREADS})",
    )
    _json_flag(m)
    m.set_defaults(func=_cmd_models)


def _add_profile(sub: Any) -> None:
    from edgeseg.measure.profiling import profile as api

    pr = sub.add_parser("profile", help="measure size, FLOPs, latency, memory, stage times")
    pr.add_argument(
        "models",
        nargs="*",
        help="registered model names (default: all), or ONNX files: per-layer times "
        "inside --engine",
    )
    _timing_flags(pr)
    pr.add_argument(
        "--engine",
        choices=D.LAYER_ENGINES,
        default=None,
        help="the engine whose own profiler times each layer of the ONNX files given (ort)",
    )
    api_flag(pr, api, "num_classes", flag="--classes", type=_positive)
    for name in ("batch_size", "warmup", "repeats"):
        api_flag(pr, api, name, type=_positive)
    pr.add_argument("--no-fold-bn", action="store_true", help="time with BatchNorm unfolded")
    pr.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's allocator at its defaults"
    )
    _peak_flag(pr)
    _json_flag(pr)
    pr.set_defaults(func=_cmd_profile)


def _add_train(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model on a data folder (or from a YAML recipe)",
        description="edgeseg train --model NAME --data DIR [--epochs N] [--recipe R.yaml] "
        "[section.key=value ...]; under torchrun it trains with DistributedDataParallel.",
    )
    t.add_argument("--model", default=None, help="registered model name (model.name)")
    t.add_argument(
        "--data",
        default=None,
        help="data root (data.root): list files or "
        "images/ + masks/; a classes.txt there names the classes",
    )
    t.add_argument("--epochs", type=_positive, default=None, help="epochs (train.epochs)")
    t.add_argument(
        "--time",
        metavar="BUDGET",
        default=None,
        help="train within BUDGET: "
        "20m, 1.5h (probed here into epochs whose schedule finishes inside it), "
        "30 epochs or 20000 images (compare's --budget forms)",
    )
    t.add_argument("--recipe", default=None, help="YAML recipe the flags and overrides amend")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (last.pt)")
    t.add_argument("--out", help="run directory (train.out)")
    t.add_argument(
        "items",
        nargs="*",
        help="overrides like optim.lr=2e-3 (a leading RECIPE.yaml is read as --recipe)",
    )
    t.set_defaults(func=_cmd_train)


def _add_eval(sub: Any) -> None:
    from edgeseg.engine.evaluate import evaluate as api

    e = sub.add_parser("eval", help="evaluate a checkpoint on a data split (every paper metric)")
    e.add_argument("checkpoint", help="checkpoint file, run directory (best.pt) or shipped name")
    api_flag(e, api, "data_root", flag="--data", required=True)
    api_flag(e, api, "split")
    api_flag(e, api, "info", flag="--preset")
    api_flag(e, api, "input_size", flag="--size", type=_size)
    api_flag(e, api, "batch_size", type=_positive)
    api_flag(e, api, "threads", type=_threads)
    api_flag(e, api, "paper_protocol", action="store_true")
    _json_flag(e)
    e.set_defaults(func=_cmd_eval)


def _add_predict(sub: Any) -> None:
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
    _overwrite_flag(pd)
    pd.add_argument("--legend", action="store_true", help="class colour key under each overlay")
    pd.add_argument("--size", type=_size, default=None, help="run the network at HxW")
    pd.add_argument("--threads", type=_threads, default=None, help="intra-op threads")
    pd.add_argument(
        "--backend",
        default=None,
        choices=D.BACKENDS,
        help="inference backend (default channels_last)",
    )
    pd.add_argument("--calib-data", default=None, help="data root calibrating the int8 backends")
    pd.add_argument("--no-overlays", action="store_true", help="write the label maps only")
    pd.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="segment on a Ray cluster: local, auto or HOST:PORT (extra [ray]); "
        "images already done in --out are skipped",
    )
    pd.add_argument(
        "--actors",
        type=_positive,
        default=2,
        help="with --ray: segmenters at once, --threads each (2)",
    )
    pd.set_defaults(func=_cmd_predict)


def _add_export(sub: Any) -> None:
    from edgeseg.workflows.export import export_checkpoint as api

    ex = sub.add_parser("export", help="export a checkpoint to ONNX and check it against PyTorch")
    ex.add_argument("checkpoint", help="checkpoint file, run directory or shipped name")
    ex.add_argument(
        "--format",
        choices=["onnx", "onnx-int8", "onnx-int8-nncf", "litert", "litert-int8"],
        default="onnx",
        help="onnx (fp32), onnx-int8 (ORT static int8), onnx-int8-nncf (NNCF's int8, "
        "for OpenVINO), litert / litert-int8 (a .tflite file, the litert extra); int8 is "
        "calibrated on --data's train split",
    )
    dest = ex.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", help="output file, e.g. model.onnx")
    dest.add_argument(
        "--bundle",
        metavar="DIR",
        help="deployment bundle folder for edgeseg-run: "
        "the backend benchmark picks fp32 or int8 (accuracy on --data)",
    )
    ex.add_argument(
        "--threads",
        type=_threads,
        default=D.THREADS,
        help=f"threads of the bundle's benchmark ({D.THREADS})",
    )
    api_flag(ex, api, "opset", type=_positive)
    api_flag(ex, api, "input_size", flag="--size", type=_size)
    ex.add_argument(
        "--output",
        choices=D.OUTPUTS,
        default=None,
        help="what the graph outputs: logits (N,K,H,W float), or the uint8 label map: "
        "labels (arg-max at full size), labels-half / labels-quarter (arg-max at 1/2 or "
        "1/4 of it), labels-low (at the network's output resolution); labels upsampled "
        "(logits; with --bundle: the fastest within --accuracy-budget, measured)",
    )
    api_flag(ex, api, "data")
    api_flag(ex, api, "split")
    api_flag(ex, api, "check_images", type=_positive)
    ex.add_argument(
        "--calib-images",
        type=_positive,
        default=D.CALIB_IMAGES,
        help=f"int8 calibration images ({D.CALIB_IMAGES})",
    )
    ex.add_argument(
        "--accuracy-budget",
        type=float,
        default=D.ACCURACY_BUDGET,
        help=f"mIoU int8 may lose against fp32 ({D.ACCURACY_BUDGET})",
    )
    _mixed_flag(ex, "on for --bundle, off for --out")
    _json_flag(ex)
    ex.set_defaults(func=_cmd_export)


def _mixed_flag(p: argparse.ArgumentParser, default: str = "off") -> None:
    p.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="int8 losing more than --accuracy-budget on --data keeps its most sensitive "
        f"modules in fp32 until it does not; prints the sensitivity table ({default})",
    )


def _add_bench(sub: Any) -> None:
    from edgeseg.measure.bench import bench as api

    b = sub.add_parser(
        "bench",
        help="latency, memory, size and accuracy of every CPU backend, each in a fresh process",
    )
    b.add_argument("source", help="model name, checkpoint / run directory, or .onnx file")
    _timing_flags(b)
    api_flag(b, api, "backends", type=lambda t: [x for x in t.split(",") if x])
    api_flag(b, api, "num_classes", flag="--classes", type=_positive)
    for name in ("iterations", "warmup", "repeats"):
        api_flag(b, api, name, type=_positive)
    api_flag(b, api, "data")
    api_flag(b, api, "split")
    api_flag(b, api, "eval_images", type=_positive)
    api_flag(b, api, "calib_data")
    api_flag(b, api, "calib_images", type=_positive)
    api_flag(b, api, "budget_miou", flag="--accuracy-budget", type=float)
    _mixed_flag(b)
    api_flag(b, api, "workdir", flag="--keep")
    _peak_flag(b)
    _json_flag(b)
    b.set_defaults(func=_cmd_bench)


def _cmd_peak(args: argparse.Namespace) -> int:
    from edgeseg.measure.peak import measure_peak

    res = measure_peak(args.threads)
    if _emit_json(args, res.to_dict()):
        return 0
    print(res.table())
    return 0


def _add_peak(sub: Any) -> None:
    p = sub.add_parser(
        "peak",
        help="this CPU's arithmetic peak per precision (fp32, bf16, int8), measured here",
    )
    _timing_flags(p, size=False)
    _json_flag(p)
    p.set_defaults(func=_cmd_peak)


def _add_compress(sub: Any) -> None:
    from edgeseg.workflows.compress import compress_checkpoint as api

    z = sub.add_parser(
        "compress", help="prune, sparsify or group a checkpoint, fine-tune, report the gains"
    )
    z.add_argument("checkpoint", help="checkpoint file, run directory or shipped weights name")
    api_flag(z, api, "method", required=True, choices=D.COMPRESS_METHODS)
    api_flag(z, api, "out", required=True)
    api_flag(z, api, "data")
    api_flag(z, api, "epochs", type=int)
    api_flag(z, api, "ratio", type=float)
    api_flag(z, api, "sparsity", type=float)
    api_flag(z, api, "groups", type=int)
    api_flag(z, api, "round_to", type=_positive)
    api_flag(z, api, "size", type=_size)
    api_flag(z, api, "threads", type=_threads)
    api_flag(z, api, "backends", type=lambda t: tuple(b for b in t.split(",") if b))
    _json_flag(z)
    z.add_argument("overrides", nargs="*", help="fine-tuning recipe: optim.lr=2e-4 ...")
    z.set_defaults(func=_cmd_compress)


def _add_compare(sub: Any) -> None:
    c = sub.add_parser(
        "compare",
        help="train, evaluate, profile and benchmark several models; write a report",
    )
    c.add_argument(
        "--models",
        default=None,
        help="comma-separated: zoo names, torchvision:NAME, NAME=CHECKPOINT (already trained)",
    )
    c.add_argument("--data", default=None, help="data root (recipe.data.root)")
    c.add_argument("--preset", default=None, help="camvid | cityscapes | coco_super | custom")
    c.add_argument(
        "--budget",
        default=None,
        help="training budget per model: 90s, 20m, 1.5h (time), 30 epochs, 20000 images",
    )
    c.add_argument("--out", default=None, help="output folder (compare)")
    c.add_argument("--size", type=_size, default=None, help="profile/bench HxW (val images')")
    c.add_argument("--threads", type=_threads, default=None, help=f"threads ({D.THREADS})")
    c.add_argument("--backends", default=None, help="benchmarked backends (comma-separated)")
    c.add_argument(
        "--accuracy-budget",
        type=float,
        default=None,
        help=f"mIoU a backend may lose against fp32 ({D.ACCURACY_BUDGET})",
    )
    _mixed_flag(c)
    c.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the models on a Ray cluster: local, auto or HOST:PORT (extra [ray])",
    )
    c.add_argument(
        "--bench-node",
        default=None,
        metavar="NODE",
        help="with --ray: node (id, IP or custom resource) timing every model; "
        "default the driver's",
    )
    c.add_argument("--config", default=None, help="YAML comparison (CompareConfig)")
    c.add_argument(
        "--demo",
        action="store_true",
        help="generated street scenes, three light models, 60 epochs each",
    )
    _json_flag(c)
    c.add_argument("overrides", nargs="*", help="key=value: budget=5m recipe.optim.lr=1e-3")
    c.set_defaults(func=_cmd_compare)


def _cmd_data(args: argparse.Namespace) -> int:
    from edgeseg.data.check import check_folder

    report = check_folder(args.root, tuple(args.splits.split(",")), args.preset)
    if _emit_json(args, report.to_dict()):
        return 0 if not report.problem_count else 1
    print("\n".join(report.lines()))
    return 0 if not report.problem_count else 1


def _add_data(sub: Any) -> None:
    d = sub.add_parser(
        "data",
        help="check a data folder before training: pairs, sizes, classes, void, problems",
        description="edgeseg data check DIR: read DIR as training will and report what it "
        "holds (exit 1 when a pair would stop a training).",
    )
    d.add_argument("action", choices=["check"], help="what to do with the folder")
    d.add_argument("root", help="data root (list files, images/ + masks/, split folders)")
    d.add_argument("--splits", default="train,val", help="splits to read (train,val)")
    d.add_argument("--preset", default="camvid", help="preset when DIR has no class file")
    _json_flag(d)
    d.set_defaults(func=_cmd_data)


_COMMANDS = (
    _add_models,
    _add_profile,
    _add_data,
    _add_train,
    _add_eval,
    _add_predict,
    _add_export,
    _add_bench,
    _add_peak,
    _add_compress,
    _add_compare,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeseg`` argument parser (exposed for docs and tests)."""
    from edgeseg import __version__

    p = OneLineParser(prog="edgeseg", description="Efficient semantic segmentation on CPUs.")
    p.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for add in _COMMANDS:
        add(sub)
    return p


#: subcommand -> (flag, folder?) of what it writes: checked before any work starts.
_OUTPUTS = {
    "train": (("out", True),),
    "predict": (("out", True),),
    "compress": (("out", True),),
    "compare": (("out", True),),
    "export": (("out", False), ("bundle", True)),
    "bench": (("keep", True),),
}


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output checked before any work: writable, and no file the command did not
    create replaced without ``--overwrite`` (a file output, ``--json FILE``, a folder of
    artefacts to keep)."""
    from edgeseg_runtime.files import OVERWRITE_HINT, check_replace

    from edgeseg.utils import check_output

    overwrite = getattr(args, "overwrite", False)
    for flag, folder in _OUTPUTS.get(args.command, ()):
        value = getattr(args, flag, None)
        if value is not None:
            check_output(value, f"--{flag}", folder)
            if not folder:
                check_replace(value, f"--{flag}", overwrite)
    keep = getattr(args, "keep", None)
    if keep and not overwrite and Path(keep).is_dir() and any(Path(keep).iterdir()):
        raise EdgesegError(f"--keep {keep}: not empty; {OVERWRITE_HINT} its files, or a new folder")
    if getattr(args, "json", None) not in (None, "-"):
        check_output(args.json, "--json", folder=False)
        check_replace(args.json, "--json", overwrite)


def _one_line(e: EdgesegError) -> str:
    """The error's own line: an error raised in a DataLoader worker comes back wrapped in
    the worker's traceback ("Caught DataError in DataLoader worker process 0 ...")."""
    text = str(e).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeseg`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a one-line usage error (status 2)
        return int(e.code or 0)
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
        _check_outputs(args)
        return func(args)
    except EdgesegError as e:
        print(f"edgeseg: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: unwritable, a file where a folder goes ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"edgeseg: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
