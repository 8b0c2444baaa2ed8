"""Labels out of the graph against logits + host arg-max, side by side, with the mIoU cost.

For each shipped model: the fp32 ONNX export three ways (``--output logits``, ``labels``,
``labels-low``; :mod:`edgeseg.deploy.labels`), each run by the torch-free runtime's
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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime import Segmenter
from edgeseg_runtime.backends import make_runner
from edgeseg_runtime.processing import read_image

from edgeseg.cpu import cpu_name
from edgeseg.defaults import OUTPUTS
from edgeseg.deploy.backends import onnx_backend_unavailable
from edgeseg.engine.checkpoint import load_model
from edgeseg.measure.bench import eval_set
from edgeseg.metrics import confusion_matrix, mean_iou
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import atomic_write_json, atomic_write_text
from edgeseg.workflows.export import export_checkpoint


def _score(path: Path, images: torch.Tensor, labels: np.ndarray, k: int, ignore: int) -> float:
    """mIoU of the file's labels (its own, or its logits' arg-max) on the split."""
    run = make_runner("ort", path)
    preds = []
    for x in images:
        y = run(x[None].numpy())[0]
        preds.append(y if y.ndim == 2 else y.argmax(0))
    return mean_iou(confusion_matrix(np.stack(preds), labels, k, ignore))


def _time(segs: dict[str, Segmenter], rgb: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of ``seg(rgb)`` per segmenter, rounds interleaved (order alternating)."""
    names = list(segs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up: first compile / allocation
        for _ in range(3):
            segs[n](rgb)
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            segs[n](rgb)
            times[n].append((time.perf_counter() - t) * 1e3)
    return times


def run_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Export the three outputs, score them, time them on every engine."""
    ckpt_path = pretrained_path(name)
    _, ckpt = load_model(ckpt_path)
    size = tuple(ckpt.get("input_size") or (360, 480))
    images, labels = eval_set(ckpt, args.data, args.split, None, size)
    k, ignore = int(ckpt["model"]["num_classes"]), ckpt["dataset"]["ignore_index"]
    files, miou, applied = {}, {}, {}
    for out in OUTPUTS:
        files[out] = work / f"{name}-{out}.onnx"
        res = export_checkpoint(ckpt_path, files[out], input_size=size, output=out)
        applied[out] = res.output
        miou[out] = _score(files[out], images, labels, k, ignore)
    image = next(iter(sorted((Path(args.data) / args.split).glob("*.png"))), None)
    rgb = read_image(image) if image else (np.random.rand(*size, 3) * 255).astype(np.uint8)
    rows: dict[str, Any] = {}
    for b in args.backends.split(","):
        if onnx_backend_unavailable(b):
            continue
        segs = {o: Segmenter(files[o], backend=b, threads=args.threads) for o in OUTPUTS}
        times = _time(segs, rgb, args.rounds)
        rows[b] = {o: {"median_ms": statistics.median(t), "runs": len(t)} for o, t in times.items()}
    return {"model": name, "size": list(size), "miou": miou, "applied": applied, "backends": rows}


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Label output against logits + host arg-max: torch-free `Segmenter`, one "
        f"{res['image']} image end to end (normalise, network, labels), median of "
        f"{res['rounds']} interleaved rounds, {res['threads']} threads, {res['cpu']}. "
        f"mIoU on {res['data']} {res['split']} ({res['images']} images), scored on each "
        "file's own labels.",
        "",
        "| model | engine | logits ms | labels ms | labels-low ms | labels speed-up "
        "| labels-low speed-up | mIoU logits | labels | labels-low |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in res["models"]:
        mi = m["miou"]
        low = mi["labels-low"] if m["applied"]["labels-low"] == "labels-low" else None
        for b, r in m["backends"].items():
            ms = {o: r[o]["median_ms"] for o in OUTPUTS}
            lines.append(
                f"| {m['model']} | {b} | {ms['logits']:.1f} | {ms['labels']:.1f} | "
                f"{ms['labels-low']:.1f} | {ms['logits'] / ms['labels']:.2f}x | "
                f"{ms['logits'] / ms['labels-low']:.2f}x | {mi['logits']:.4f} | "
                f"{mi['labels']:.4f} | "
                + (f"{low:.4f} ({low - mi['logits']:+.4f})" if low is not None else "= labels")
                + " |"
            )
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
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), res)
    md = markdown(res)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
