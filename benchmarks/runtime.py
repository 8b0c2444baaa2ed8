"""Every backend for every zoo model, side by side in one run, against the machine's ceiling.

For each model: :func:`edgeseg.measure.bench.bench` (each backend in fresh processes, rounds
interleaved) at one size and thread count, the speed-up of the best backend over eager
NCHW fp32, int8 against the best fp32 backend, and the attained GFLOP/s of the best
backend (flop_counter FLOPs / median latency) next to the machine's measured
dense-convolution ceiling: the best GFLOP/s of a large 3x3 convolution (256 -> 256 channels
at 90x120, fp32, channels_last, same threads), the most this CPU does with fp32 convs; the
same conv as edgeseg's QDQ int8 file in ONNX Runtime and OpenVINO gives the int8 ceiling,
which int8 backends are set against.
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
from edgeseg.deploy.backends import BACKENDS
from edgeseg.measure.bench import bench, fastest_within_budget
from edgeseg.measure.counts import count_flops
from edgeseg.measure.timing import num_threads, time_interleaved
from edgeseg.models import create_model, list_models
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size

FP32 = ("eager", "channels_last", "compile", "ort", "openvino")
INT8 = ("ort-int8", "pt2e-int8", "openvino-int8")


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
        with num_threads(threads):
            times = time_interleaved(runs, warmup=3, repeats=repeats)
    for b, t in times.items():
        out[b] = flops / (min(t) / 1e3) / 1e9
    return out


def ceiling_of(backend: str, res: dict[str, Any]) -> float:
    """The ceiling a backend is set against: int8 backends against the best int8 dense
    conv measured here, fp32 ones against the fp32 one."""
    int8 = [v for k, v in res.get("ceilings", {}).items() if k.endswith("int8")]
    return max(int8) if backend.endswith("int8") and int8 else res["ceiling_gflops"]


def markdown(res: dict[str, Any]) -> str:
    """The README table."""
    h, w = res["size"]
    cols = [b for b in BACKENDS if any(b in m["backends"] for m in res["models"])]
    lines = [
        f"Backends at {h}x{w}, {res['threads']} threads, {res['cpu']}, torch "
        f"{res['torch_version']}; each backend in fresh processes ({res['repeats']} per "
        f"backend x {res['iterations']} timed runs, rounds interleaved). Median ms. "
        f"Dense 3x3 conv ceiling: {res['ceiling_gflops']:.0f} GFLOP/s fp32"
        + (
            ", int8 (GOP/s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in res["ceilings"].items() if k.endswith("int8"))
            if res.get("ceilings")
            else ""
        )
        + "; each model's best backend is set against the ceiling of its own precision.",
        "",
        "| model | " + " | ".join(cols) + " | best | best vs eager | int8 vs best fp32 "
        "| best GFLOP/s (% of ceiling) |",
        "| --- | " + " | ".join("---:" for _ in cols) + " | --- | ---: | ---: | ---: |",
    ]
    for m in sorted(res["models"], key=lambda m: m["model"]):
        cells = []
        for b in cols:
            r = m["backends"].get(b)
            cells.append("-" if r is None else f"{r['latency_ms']['median']:.0f}")
        int8 = f"{m['int8_vs_best_fp32']:.2f}x" if m.get("int8_vs_best_fp32") else "-"
        lines.append(
            f"| {m['model']} | " + " | ".join(cells) + f" | {m['best']} | "
            f"{m['best_speedup']:.2f}x | {int8} | {m['best_gflops']:.1f} "
            f"({100 * m['best_gflops'] / ceiling_of(m['best'], res):.0f} %) |"
        )
    scored = [m for m in res["models"] if any("miou" in r for r in m["backends"].values())]
    if scored:
        lines += [
            "",
            "Trained weights, every backend scored on the data split: mIoU (pixel agreement "
            "with eager). Fastest within 1 mIoU point of eager: the backend to deploy.",
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
            lines.append(
                f"| {m['model']} | {m['source']} | "
                + " | ".join(cells)
                + f" | {fastest_within_budget(m['backends'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated (default: every model)")
    p.add_argument("--size", default="360x480")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--repeats", type=int, default=2, help="fresh processes per backend")
    p.add_argument("--iterations", type=int, default=5, help="timed runs per process")
    p.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH (repeatable)")
    p.add_argument("--data", default=None, help="data root for the checkpoints' accuracy")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime"))
    p.add_argument("--resume", action="store_true", help="keep the models already in --out")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = p.parse_args(argv)
    if args.render:
        out = Path(args.out)
        atomic_write_text(
            out.with_suffix(".md"), markdown(json.loads(out.with_suffix(".json").read_text()))
        )
        return 0
    h, w = parse_size(args.size)
    names = args.models.split(",") if args.models else list_models()
    ckpts = dict(item.split("=", 1) for item in args.checkpoint)
    t0 = time.time()
    ceiling = conv_ceiling(args.threads)
    ceilings = int8_ceilings(args.threads)
    print(
        f"dense conv ceiling: {ceiling:.1f} GFLOP/s; ONNX engines: "
        + ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items()),
        flush=True,
    )
    out = Path(args.out)
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
            "ceiling_gflops": ceiling,
            "ceilings": ceilings,
            "seconds": time.time() - t0,
            "models": rows,
        }

    for n in names:
        src = ckpts.get(n, n)
        res = bench(
            src,
            size=(h, w),
            threads=args.threads,
            backends=args.backends.split(","),
            iterations=args.iterations,
            warmup=2,
            repeats=args.repeats,
            data=args.data if n in ckpts else None,
            calib_data=args.data if n in ckpts else None,
        )
        flops = count_flops(create_model(n, num_classes=11).eval(), torch.randn(1, 3, h, w))
        med = {b: r["latency_ms"]["median"] for b, r in res["backends"].items()}
        fp32 = [b for b in med if b in FP32]
        int8 = [b for b in med if b in INT8]
        best = min(med, key=med.get)
        best_fp32 = min(fp32, key=med.get) if fp32 else None
        row = {
            "model": n,
            "source": src,
            "flops": flops,
            "backends": res["backends"],
            "quantization": res["quantization"],
            "errors": res.get("errors", {}),
            "best": best,
            "best_speedup": med["eager"] / med[best] if "eager" in med else float("nan"),
            "best_gflops": flops / (med[best] / 1e3) / 1e9,
        }
        if int8 and best_fp32:
            best_int8 = min(int8, key=med.get)
            row["best_int8"] = best_int8
            row["int8_vs_best_fp32"] = med[best_fp32] / med[best_int8]
        rows.append(row)
        print(
            f"  {n}: " + ", ".join(f"{b} {v:.0f}" for b, v in med.items()) + f" -> {best}",
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
