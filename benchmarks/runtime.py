"""Every backend for every zoo model, side by side in one run, against the CPU's peak.

For each model: :func:`edgeseg.measure.bench.bench` (each backend in fresh processes, rounds
interleaved) at one size and thread count, the speed-up of the best backend over eager
NCHW fp32, int8 against the best fp32 backend, each backend's precision as its engine
reports it (OpenVINO's compiled model is read back: no row called fp32 ran in bf16), and
the attained G(FL)OP/s of the best backend (flop_counter FLOPs / median latency) against
the measured arithmetic peak of *its own precision* on the same threads
(:mod:`edgeseg.measure.peak`: an FMA / bf16 dot-product / int8 VNNI instruction loop,
or the library GEMM where it goes faster). Two software ceilings are printed beside it:
the best GFLOP/s of a large dense 3x3 convolution (256 -> 256 channels at 90x120) in
PyTorch fp32 and, as edgeseg's QDQ int8 file, in ONNX Runtime and OpenVINO.
With ``--checkpoint NAME=PATH`` (repeatable) and ``--data``, that model's backends are
also scored on the data split (mIoU, pixel agreement with eager).

Usage:
    python benchmarks/runtime.py [--models a,b] [--size 360x480] [--threads 2]
        [--repeats 2] [--iterations 5] [--checkpoint segfast=runs/x --data ROOT]
    python benchmarks/runtime.py --render   # rewrite the .md from the .json

Writes ``benchmarks/results/runtime.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from edgeseg.cpu import cpu_name
from edgeseg.deploy.backends import BACKENDS, BF16_BACKENDS, backend_precision, native_bf16
from edgeseg.measure.bench import bench, fastest_within_budget
from edgeseg.measure.peak import Peak, measure_peak
from edgeseg.measure.timing import num_threads, time_interleaved
from edgeseg.models import list_models
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size

FP32 = ("eager", "channels_last", "compile", "ort", "openvino")


def conv_ceiling(threads: int, repeats: int = 10) -> float:
    """GFLOP/s of a large dense 3x3 conv (the best case for oneDNN fp32 on this CPU)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 256, 90, 120)
    flops = 2 * 256 * 256 * 9 * 90 * 120
    runs = {
        "nchw": (conv, x),
        "nhwc": (
            conv.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        ),
    }
    with num_threads(threads):
        times = time_interleaved(runs, warmup=3, repeats=repeats)
    best_ms = min(min(t) for t in times.values())
    return flops / (best_ms / 1e3) / 1e9


def int8_ceilings(threads: int, repeats: int = 10) -> dict[str, float]:
    """GOP/s of the same dense 3x3 conv in each ONNX engine, fp32 and edgeseg's QDQ int8
    (calibrated on random inputs; ops counted as for fp32: 2 per multiply-add), so every
    backend can be set against the ceiling of its own precision and engine."""
    import tempfile

    from edgeseg.deploy.backends import make_runner, onnx_backend_unavailable
    from edgeseg.deploy.quantize import quantize_onnx

    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 256, 90, 120)
    flops = 2 * 256 * 256 * 9 * 90 * 120
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "conv.onnx", Path(tmp) / "conv.int8.onnx"
        torch.onnx.export(conv, (x,), str(fp32), dynamo=False, input_names=["x"])
        g = torch.Generator().manual_seed(0)
        quantize_onnx(fp32, int8, [torch.randn(256, 90, 120, generator=g) for _ in range(4)])
        runs = {}
        for b in ("ort", "ort-int8", "openvino", "openvino-int8"):
            if onnx_backend_unavailable(b):
                continue
            run = make_runner(b, onnx_path=fp32, int8_path=int8, example=x, threads=threads)
            runs[b] = (run, x)
        with num_threads(threads):  # settle: one engine's spinning threads slow the next
            times = time_interleaved(runs, warmup=3, repeats=repeats, settle=1)
    for b, t in times.items():
        out[b] = flops / (min(t) / 1e3) / 1e9
    return out


def peak_of(backend: str, row: dict[str, Any], res: dict[str, Any]) -> float | None:
    """The peak a backend's row is set against: its own precision's (``int8+fp32`` ->
    int8's); in older files without a measured peak, the dense conv ceiling of it."""
    precision = (row.get("precision") or backend_precision(backend)).split("+")[0]
    if "peak" in res:
        return Peak.from_dict(res["peak"]).of(precision)
    int8 = [v for k, v in res.get("ceilings", {}).items() if k.endswith("int8")]
    return max(int8) if precision == "int8" and int8 else res["ceiling_gflops"]


def _header(res: dict[str, Any]) -> list[str]:
    h, w = res["size"]
    lines = [
        f"Backends at {h}x{w}, {res['threads']} threads, {res['cpu']}, torch "
        f"{res['torch_version']}; each backend in fresh processes ({res['repeats']} per "
        f"backend x {res['iterations']} timed runs, rounds interleaved). Median ms.",
        "",
    ]
    if "peak" in res:
        lines += [Peak.from_dict(res["peak"]).table(), ""]
    lines.append(
        f"Software ceilings (dense 3x3 conv): {res['ceiling_gflops']:.0f} GFLOP/s PyTorch fp32"
        + "".join(f", {k} {v:.0f}" for k, v in res.get("ceilings", {}).items())
        + ". Each model's best backend is set against the peak of its own precision."
    )
    return lines


def _best_cell(m: dict[str, Any], res: dict[str, Any]) -> str:
    row = m["backends"][m["best"]]
    top = peak_of(m["best"], row, res)
    share = f" ({100 * m['best_gflops'] / top:.0f} %)" if top else ""
    return f"{m['best']} | {row.get('precision', '-')} | {m['best_gflops']:.1f}{share}"


def markdown(res: dict[str, Any]) -> str:
    """The results page: the peak, then latency per backend and the best one per model."""
    cols = [b for b in BACKENDS if any(b in m["backends"] for m in res["models"])]
    lines = [
        *_header(res),
        "",
        "| model | " + " | ".join(cols) + " | best | precision | G(FL)OP/s (% of its peak) "
        "| best vs eager | int8 vs best fp32 |",
        "| --- | " + " | ".join("---:" for _ in cols) + " | --- | --- | ---: | ---: | ---: |",
    ]
    for m in sorted(res["models"], key=lambda m: m["model"]):
        cells = []
        for b in cols:
            r = m["backends"].get(b)
            cells.append("-" if r is None else f"{r['latency_ms']['median']:.1f}")
        int8 = f"{m['int8_vs_best_fp32']:.2f}x" if m.get("int8_vs_best_fp32") else "-"
        lines.append(
            f"| {m['model']} | " + " | ".join(cells) + f" | {_best_cell(m, res)} | "
            f"{m['best_speedup']:.2f}x | {int8} |"
        )
    precisions = {b: r.get("precision") for m in res["models"] for b, r in m["backends"].items()}
    if any(precisions.values()):
        lines += [
            "",
            "Precision each engine reported: "
            + ", ".join(f"{b} {p}" for b, p in precisions.items() if p)
            + ".",
        ]
    return "\n".join(lines + _scored(res, cols)) + "\n"


def _scored(res: dict[str, Any], cols: list[str]) -> list[str]:
    """The accuracy table of the models given with trained weights."""
    scored = [m for m in res["models"] if any("miou" in r for r in m["backends"].values())]
    if not scored:
        return []
    lines = [
        "",
        "Trained weights, every backend scored on the data split: mIoU (pixel agreement "
        "with eager). Fastest within 1 mIoU point of eager: the backend to deploy, with "
        "its latency and share of its precision's peak.",
        "",
        "| model | weights | " + " | ".join(cols) + " | fastest within 1 point |",
        "| --- | --- | " + " | ".join("---:" for _ in cols) + " | --- |",
    ]
    for m in scored:
        cells = []
        for b in cols:
            r = m["backends"].get(b, {})
            if "miou" not in r:
                cells.append("-")
            else:
                agree = r.get("pixel_agreement")
                cells.append(f"{r['miou']:.4f}" + (f" ({100 * agree:.1f} %)" if agree else ""))
        pick = fastest_within_budget(m["backends"])
        row = m["backends"][pick]
        top = peak_of(pick, row, res)
        gops = m["flops"] / (row["latency_ms"]["median"] / 1e3) / 1e9
        prec = (row.get("precision") or backend_precision(pick)).split("+")[0]
        share = f", {100 * gops / top:.0f} % of the {prec} peak" if top else ""
        lines.append(
            f"| {m['model']} | {Path(m['source']).name} | "
            + " | ".join(cells)
            + f" | {pick}: {row['latency_ms']['median']:.1f} ms{share} |"
        )
    return lines


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated (default: every model)")
    p.add_argument("--shipped", action="store_true", help="the shipped weights, scored on --data")
    p.add_argument("--size", default="360x480")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", default=None, help="default: all (bf16 on a bf16 CPU only)")
    p.add_argument("--repeats", type=int, default=2, help="fresh processes per backend")
    p.add_argument("--iterations", type=int, default=5, help="timed runs per process")
    p.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH (repeatable)")
    p.add_argument("--data", default=None, help="data root for the checkpoints' accuracy")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime"))
    p.add_argument("--resume", action="store_true", help="keep the models already in --out")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    return p.parse_args(argv)


def _model_row(n: str, src: str, res: dict[str, Any]) -> dict[str, Any]:
    """One model's record: its bench result, best backend, speed-ups and attained rate."""
    med = {b: r["latency_ms"]["median"] for b, r in res["backends"].items()}
    fp32 = [b for b in med if b in FP32]
    int8 = [b for b in med if b.endswith("int8")]
    best = min(med, key=med.get)
    best_fp32 = min(fp32, key=med.get) if fp32 else None
    row = {
        "model": n,
        "source": src,
        "flops": res["ops"],
        "backends": res["backends"],
        "quantization": res["quantization"],
        "errors": res.get("errors", {}),
        "best": best,
        "best_speedup": med["eager"] / med[best] if "eager" in med else float("nan"),
        "best_gflops": res["ops"] / (med[best] / 1e3) / 1e9,
    }
    if int8 and best_fp32:
        best_int8 = min(int8, key=med.get)
        row["best_int8"] = best_int8
        row["int8_vs_best_fp32"] = med[best_fp32] / med[best_int8]
    return row


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    out = Path(args.out)
    if args.render:
        atomic_write_text(
            out.with_suffix(".md"), markdown(json.loads(out.with_suffix(".json").read_text()))
        )
        return 0
    h, w = parse_size(args.size)
    ckpts = dict(item.split("=", 1) for item in args.checkpoint)
    if args.shipped:
        ckpts.update({n: str(pretrained_path(n)) for n in PRETRAINED})
    names = args.models.split(",") if args.models else (list(ckpts) or list_models())
    backends = args.backends.split(",") if args.backends else list(BACKENDS)
    if not args.backends and not native_bf16():
        backends = [b for b in backends if b not in BF16_BACKENDS]
    t0 = time.time()
    peak = measure_peak(args.threads)
    print(peak.table(), flush=True)
    ceiling, ceilings = conv_ceiling(args.threads), int8_ceilings(args.threads)
    rows = []
    if args.resume and out.with_suffix(".json").is_file():
        rows = json.loads(out.with_suffix(".json").read_text())["models"]
        names = [n for n in names if n not in {r["model"] for r in rows}]
        print(f"resuming: {len(rows)} model(s) kept, {len(names)} to run", flush=True)

    def result() -> dict[str, Any]:
        return {
            "size": [h, w],
            "threads": args.threads,
            "repeats": args.repeats,
            "iterations": args.iterations,
            "cpu": cpu_name(),
            "torch_version": torch.__version__,
            "peak": peak.to_dict(),
            "ceiling_gflops": ceiling,
            "ceilings": ceilings,
            "seconds": time.time() - t0,
            "models": rows,
        }

    for n in names:
        src = ckpts.get(n, n)
        data = args.data if n in ckpts else None
        res = bench(
            src,
            size=(h, w),
            threads=args.threads,
            backends=backends,
            iterations=args.iterations,
            warmup=2,
            repeats=args.repeats,
            data=data,
            calib_data=data,
            peak=False,
        )
        rows.append(_model_row(n, src, res))
        print(
            f"  {n}: "
            + ", ".join(f"{b} {r['latency_ms']['median']:.1f}" for b, r in res["backends"].items()),
            flush=True,
        )
        # Written after every model, so an interrupted run keeps what it measured.
        atomic_write_json(out.with_suffix(".json"), result())
    final = result()
    atomic_write_json(out.with_suffix(".json"), final)
    md = markdown(final)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
