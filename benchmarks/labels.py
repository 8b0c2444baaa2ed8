"""Labels out of the graph against logits + host arg-max, side by side, with the mIoU cost.

For each shipped model: the fp32 ONNX export in every output form (``--output logits``,
``labels``, ``labels-low``, ``labels-half``, ``labels-quarter``;
:mod:`edgeseg.deploy.labels`), each run by the torch-free runtime's
:class:`edgeseg_runtime.Segmenter` on every engine given, timed end to end on one image
(normalisation, network, arg-max or label copy, exactly what ``edgeseg-run`` pays per
image) in interleaved rounds; and each file's mIoU on the data split, scored on the
labels it gives.

Usage:
    python benchmarks/labels.py --data ../shared/data/camvid [--models a,b] [--threads 2]
        [--backends ort,openvino] [--rounds 30]

Writes ``benchmarks/results/labels.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime.processing import read_image

from edgeseg.cpu import cpu_name
from edgeseg.defaults import OUTPUTS
from edgeseg.deploy.backends import onnx_backend_unavailable
from edgeseg.engine.checkpoint import load_model
from edgeseg.measure.bench import eval_set
from edgeseg.measure.outputs import measure_outputs
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import write_record
from edgeseg.workflows.export import export_checkpoint


def run_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Export the logits file, then every output form of it scored (on the first engine:
    the labels are the same on every engine within float rounding) and timed on each."""
    ckpt_path = pretrained_path(name)
    _, ckpt = load_model(ckpt_path)
    size = tuple(ckpt.get("input_size") or (360, 480))
    images, labels = eval_set(ckpt, args.data, args.split, None, size)
    scoring = (images, labels, int(ckpt["model"]["num_classes"]), ckpt["dataset"]["ignore_index"])
    logits = work / f"{name}.onnx"
    export_checkpoint(ckpt_path, logits, input_size=size)
    image = next(iter(sorted((Path(args.data) / args.split).glob("*.png"))), None)
    rgb = read_image(image) if image else (np.random.rand(*size, 3) * 255).astype(np.uint8)
    rows: dict[str, Any] = {}
    miou: dict[str, float] = {}
    applied: dict[str, str] = {}
    for b in args.backends.split(","):
        if onnx_backend_unavailable(b):
            continue
        once = None if miou else scoring
        measured = measure_outputs(
            logits, b, rgb, scoring=once, threads=args.threads, rounds=args.rounds
        )
        if not miou:
            miou = {o: r.miou for o, r in measured.items()}
            applied = {o: r.applied for o, r in measured.items()}
        rows[b] = {o: {"median_ms": r.median_ms, "runs": args.rounds} for o, r in measured.items()}
    return {"model": name, "size": list(size), "miou": miou, "applied": applied, "backends": rows}


def _cells(m: dict[str, Any], r: dict[str, Any]) -> list[str]:
    """One row's cells after the engine: each output's ms and speed-up over logits + host
    arg-max, then its mIoU and the change from the logits' (a form that fell back to full
    resolution reads ``= labels``)."""
    mi, base = m["miou"], r["logits"]["median_ms"]
    cells = [f"{base:.1f}"]
    for o in OUTPUTS[1:]:
        ms = r[o]["median_ms"]
        cells.append(f"{ms:.1f} ({base / ms:.2f}x)")
    cells.append(f"{mi['logits']:.4f}")
    for o in OUTPUTS[1:]:
        same = m["applied"][o] != o
        cells.append("= labels" if same else f"{mi[o] - mi['logits']:+.4f}")
    return cells


def markdown(res: dict[str, Any]) -> str:
    forms = OUTPUTS[1:]
    lines = [
        f"Label output against logits + host arg-max: torch-free `Segmenter`, one "
        f"{res['image']} image end to end (normalise, network, labels), median of "
        f"{res['rounds']} interleaved rounds, {res['threads']} threads, {res['cpu']}. "
        f"mIoU on {res['data']} {res['split']} ({res['images']} images), scored on each "
        "file's own labels; ms (speed-up over logits) per form, then the mIoU change.",
        "",
        "| model | engine | logits ms | "
        + " | ".join(f"{o} ms" for o in forms)
        + " | mIoU logits | "
        + " | ".join(f"{o} mIoU" for o in forms)
        + " |",
        "| --- | --- | " + " | ".join(["---:"] * (2 + 2 * len(forms))) + " |",
    ]
    for m in res["models"]:
        for b, r in m["backends"].items():
            lines.append(f"| {m['model']} | {b} | " + " | ".join(_cells(m, r)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="data root (CamVid)")
    p.add_argument("--split", default="val")
    p.add_argument("--models", default=",".join(PRETRAINED), help="shipped weights' names")
    p.add_argument("--backends", default="ort,openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "labels"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeseg-labels-") as tmp:
        for name in args.models.split(","):
            rows.append(run_model(name, args, Path(tmp)))
            print(f"  {name}: {rows[-1]['miou']} {rows[-1]['backends']}", flush=True)
    res = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "rounds": args.rounds,
        "data": Path(args.data).name,
        "split": args.split,
        "images": len(list((Path(args.data) / args.split).glob("*.png"))),
        "image": "360x480",
        "models": rows,
    }
    print(write_record(args.out, res, markdown(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
