"""Transposed convolutions as they are against their sub-pixel rewrite, on each engine.

A shipped network's fp32 export three ways: as trained, and with every eligible
transposed conv rewritten into phase convolutions and a pixel shuffle
(:func:`edgeseg.deploy.subpixel.subpixel_deconvs`, plain or grouped; exact up to float
rounding), each run end to end by the torch-free ``Segmenter`` on one image in interleaved
rounds (each timed run preceded by an untimed one), with the share of pixels whose label
equals the plain file's on the same engine.

Usage:
    python benchmarks/deconv.py [--model segfast_camvid] [--threads 2] [--rounds 30]

Writes ``benchmarks/results/deconv.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime import Segmenter

from edgeseg.cpu import cpu_name
from edgeseg.deploy.backends import native_bf16, onnx_backend_unavailable
from edgeseg.deploy.export import checkpoint_metadata, export_onnx
from edgeseg.deploy.rewrites import inference_graph
from edgeseg.deploy.subpixel import subpixel_deconvs
from edgeseg.engine.checkpoint import load_model
from edgeseg.measure.timing import time_interleaved
from edgeseg.pretrained import pretrained_path
from edgeseg.utils import write_record


def export_three(name: str, work: Path) -> tuple[dict[str, Path], int, tuple[int, int]]:
    """The plain, sub-pixel and grouped sub-pixel fp32 files; layers rewritten; size."""
    model, ckpt = load_model(pretrained_path(name))
    model = inference_graph(model.eval())
    size = tuple(ckpt.get("input_size") or (360, 480))
    meta = checkpoint_metadata(ckpt)
    files = {"plain": work / "plain.onnx"}
    export_onnx(model, files["plain"], input_size=size, metadata=meta)
    rewritten = 0
    for form, grouped in (("subpixel", False), ("subpixel-grouped", True)):
        sp, rewritten = subpixel_deconvs(model, grouped=grouped, undersized=True, min_channels=1)
        files[form] = work / f"{form}.onnx"
        export_onnx(sp, files[form], input_size=size, metadata=meta)
    return files, rewritten, size  # type: ignore[return-value]


def run(args: argparse.Namespace) -> dict[str, Any]:
    engines = ["ort", "openvino"] + (["openvino-bf16"] if native_bf16() else [])
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-deconv-") as tmp:
        files, rewritten, size = export_three(args.model, Path(tmp))
        rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        for eng in engines:
            if onnx_backend_unavailable(eng):
                continue
            segs = {
                f: (Segmenter(p, backend=eng, threads=args.threads), rgb) for f, p in files.items()
            }
            ref = segs["plain"][0](rgb)
            agree = {f: float((s(rgb) == ref).mean()) for f, (s, _) in segs.items()}
            times = time_interleaved(segs, warmup=3, repeats=args.rounds, settle=1)
            rows[eng] = {
                f: {"median_ms": statistics.median(t), "agreement": agree[f]}
                for f, t in times.items()
            }
            print(
                f"  {eng}: { {f: round(r['median_ms'], 1) for f, r in rows[eng].items()} }",
                flush=True,
            )
    return {
        "model": args.model,
        "rewritten": rewritten,
        "cpu": cpu_name(),
        "threads": args.threads,
        "rounds": args.rounds,
        "size": list(size),
        "engines": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    h, w = res["size"]
    lines = [
        f"`{res['model']}` fp32 with its {res['rewritten']} transposed convs as trained "
        "(*plain*) and rewritten into phase convs + pixel shuffle (*sub-pixel*, plain or "
        f"grouped); torch-free `Segmenter`, one {h}x{w} image end to end, median of "
        f"{res['rounds']} interleaved rounds, {res['threads']} threads, {res['cpu']}. "
        "Agreement: pixels labelled as the plain file labels them on the same engine.",
        "",
        "| engine | plain ms | sub-pixel ms | grouped ms | speed-up | agreement |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for eng, r in res["engines"].items():
        p, s, g = (r[f]["median_ms"] for f in ("plain", "subpixel", "subpixel-grouped"))
        lines.append(
            f"| {eng} | {p:.1f} | {s:.1f} | {g:.1f} | {p / min(s, g):.2f}x | "
            f"{min(r['subpixel']['agreement'], r['subpixel-grouped']['agreement']):.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="segfast_camvid", help="shipped weights' name")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "deconv"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(write_record(args.out, res := run(args), markdown(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
