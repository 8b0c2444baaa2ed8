"""Per-layer profiles of the shipped networks inside each engine, against this CPU's peaks.

For each shipped model: the fp32 ONNX export and its int8 QDQ file (calibrated on
``--data``'s train split), each profiled by the engines' own profilers
(:func:`edgeseg.measure.layers.profile_layers`: ONNX Runtime's per-node events, OpenVINO's
performance counters; bf16 too on a CPU with bf16 arithmetic). Per run: the summed layer
time, the share of it in layers that compute (convolutions, matrix products) and their
attained G(FL)OP/s against the peak of their own precision, the share in data movement
(re-layouts, concatenations, resizes, quantize/dequantize), the op groups that cost most,
and the layers named as slow (>= 3 % of the time at < 10 % of their peak).

Usage:
    python benchmarks/layers.py --data ../shared/data/camvid [--models a,b] [--threads 2]
        [--runs 20]

Writes ``benchmarks/results/layers.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgeseg.cpu import cpu_flags, cpu_name
from edgeseg.deploy.backends import native_bf16, onnx_backend_unavailable
from edgeseg.engine.checkpoint import load_model
from edgeseg.measure.layers import LayerProfile, profile_layers
from edgeseg.measure.peak import measure_peak
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import write_record
from edgeseg.workflows.export import Int8Options, export_checkpoint


def summarise(prof: LayerProfile) -> dict[str, Any]:
    """One run's figures: compute vs data movement, the costliest op groups, slow layers."""
    compute = [r for r in prof.layers if r.flops]
    ms = sum(r.ms for r in compute)
    flops = sum(r.flops for r in compute)
    precision = max(
        {r.precision for r in compute}, key=lambda p: sum(r.ms for r in compute if r.precision == p)
    )
    peak = prof.peaks.get(precision)
    gops = flops / ms / 1e6 if ms else 0.0
    return {
        "engine": prof.engine,
        "total_ms": prof.total_ms,
        "compute_share": ms / prof.total_ms if prof.total_ms else 0.0,
        "compute_precision": precision,
        "compute_gops": gops,
        "compute_peak_fraction": gops / peak if peak else None,
        "whole_peak_fraction": flops / prof.total_ms / 1e6 / peak
        if peak and prof.total_ms
        else None,
        "top_ops": prof.by_op()[:4],
        "slow": [
            {
                "name": r.name,
                "op": r.op,
                "kernel": r.kernel,
                "share": r.share,
                "peak_fraction": r.peak_fraction,
            }
            for r in prof.slow()[:5]
        ],
        "profile": _kept(prof.to_dict()),
    }


#: Layers kept per run in the JSON record (the costliest; the table shows fewer).
KEEP_LAYERS = 15


def _kept(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile with only its costliest layers (``layers_total`` says how many ran)."""
    layers = sorted(profile["layers"], key=lambda r: -r["ms"])
    return {**profile, "layers": layers[:KEEP_LAYERS], "layers_total": len(layers)}


def run_model(
    name: str, args: argparse.Namespace, work: Path, peaks: dict[str, float]
) -> list[dict[str, Any]]:
    """Export fp32 and int8, profile each on every engine."""
    path = pretrained_path(name)
    _, ckpt = load_model(path)
    size = tuple(ckpt.get("input_size") or (360, 480))
    files = {"fp32": work / f"{name}.onnx", "int8": work / f"{name}-int8.onnx"}
    export_checkpoint(path, files["fp32"], input_size=size)
    int8 = Int8Options("ort", calib_images=args.calib_images)
    export_checkpoint(path, files["int8"], input_size=size, data=args.data, int8=int8)
    engines = ["ort", "openvino"] + (["openvino-bf16"] if native_bf16() else [])
    rows = []
    for kind, f in files.items():
        for engine in engines:
            if onnx_backend_unavailable(engine) or (kind == "int8" and engine == "openvino-bf16"):
                continue
            prof = profile_layers(
                f, engine, size, threads=args.threads, runs=args.runs, peaks=peaks
            )
            rows.append({"model": name, "file": kind, **summarise(prof)})
            print(f"  {name} {kind} {engine}: {prof.total_ms:.1f} ms", flush=True)
    return rows


def _pct(f: float | None) -> str:
    return "-" if f is None else f"{100 * f:.0f} %"


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Per-layer profiles inside each engine: {res['cpu']} ({' '.join(res['flags'])}), "
        f"{res['threads']} threads, one {res['size']} image, median of {res['runs']} runs per "
        "layer. Peaks (G(FL)OP/s): "
        + ", ".join(f"{p} {g:.0f}" for p, g in res["peaks"].items())
        + ". *compute* = convolutions and matrix products (their operations over their own "
        "time); the rest of the time is data movement (re-layouts, concatenations, resizes, "
        "quantize/dequantize, pooling).",
        "",
        "| model | file | engine | layers ms | compute share | compute % peak | whole % peak "
        "| costliest op groups (share, % peak) | slow layers (share, % peak) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in res["rows"]:
        ops = "; ".join(
            f"{g['op']}/{g['kernel']} {g['precision']} x{g['count']} "
            f"({100 * g['share']:.0f} %, {_pct(g['peak_fraction'])})"
            for g in r["top_ops"][:3]
        )
        slow = (
            "; ".join(
                f"{s['name']} ({100 * s['share']:.0f} %, {_pct(s['peak_fraction'])})"
                for s in r["slow"][:3]
            )
            or "none"
        )
        lines.append(
            f"| {r['model']} | {r['file']} | {r['engine']} | {r['total_ms']:.1f} | "
            f"{100 * r['compute_share']:.0f} % | {_pct(r['compute_peak_fraction'])} | "
            f"{_pct(r['whole_peak_fraction'])} | {ops} | {slow} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="data root (CamVid): int8 calibration")
    p.add_argument("--models", default=",".join(PRETRAINED), help="shipped weights' names")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "layers"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pk = measure_peak(args.threads)
    peaks = {q: g for q in ("fp32", "bf16", "int8") if (g := pk.of(q))}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeseg-layers-") as tmp:
        for name in args.models.split(","):
            rows += run_model(name, args, Path(tmp), peaks)
    res = {
        "cpu": cpu_name(),
        "flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma"))),
        "threads": args.threads,
        "runs": args.runs,
        "size": "360x480",
        "peaks": peaks,
        "rows": rows,
    }
    print(write_record(args.out, res, markdown(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
