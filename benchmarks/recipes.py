"""Which recipe buys more accuracy per CPU-minute? Paper recipe vs edgeseg's, same budget.

Trains the same model with each recipe for the same wall-clock budget on this CPU
(``train.max_minutes``), one after the other, then evaluates each run's last weights on
CamVid val at full 360x480 resolution. Schedules are fitted to the budget
(``train.epochs=--epochs``) so that a decaying learning rate actually decays.

Usage:
    python benchmarks/recipes.py [--minutes 10] [--epochs 1] [--model squeeze_unet]
        [--recipes squeeze_unet_paper,camvid_fast] [--data ../shared/data/camvid]

Writes ``benchmarks/results/recipes.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgeseg.config import load_config
from edgeseg.cpu import cpu_name
from edgeseg.engine.checkpoint import load_checkpoint
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import train
from edgeseg.utils import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipes", default="squeeze_unet_paper,camvid_fast")
    p.add_argument("--model", default="squeeze_unet")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--epochs", type=int, default=1, help="schedule length fitted to the budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    if not (args.data / "train.txt").is_file():
        print(f"no CamVid at {args.data}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            cfg = load_config(
                REPO / "configs" / f"{name}.yaml",
                [
                    f"model.name={args.model}",
                    f"data.root={args.data}",
                    f"train.epochs={args.epochs}",
                    f"train.max_minutes={args.minutes}",
                    f"train.threads={args.threads}",
                    f"train.out={Path(tmp) / name}",
                    "train.progress=false",
                    "data.val_split=null",  # evaluated once below, outside the budget
                ],
            )
            if cfg.sched.warmup_epochs:
                cfg.sched.warmup_epochs = min(cfg.sched.warmup_epochs, 0.1 * args.epochs)
            cpu0 = time.process_time()
            res = train(cfg)
            cpu_s = time.process_time() - cpu0
            ck = load_checkpoint(Path(tmp) / name / "last.pt")
            images = int(ck["step"]) * cfg.train.batch_size
            m = evaluate(Path(tmp) / name / "last.pt", args.data, "val", threads=args.threads)
            rows.append(
                {
                    "recipe": name,
                    "model": args.model,
                    "budget_minutes": args.minutes,
                    "train_seconds": res.train_seconds,
                    "train_cpu_seconds": cpu_s,
                    "steps": int(ck["step"]),
                    "images_seen": images,
                    "crop_size": cfg.data.crop_size,
                    "val_miou": m["miou"],
                    "val_pixel_acc": m["pixel_acc"],
                    "val_mean_acc": m["mean_acc"],
                    "val_iou": m["iou"],
                }
            )
            print(f"{name}: {images} images, val mIoU {m['miou']:.4f}", file=sys.stderr)
    payload = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": str(torch.__version__),
        "epochs": args.epochs,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "recipes.json", payload)
    lines = [
        f"{args.model} on CamVid, {args.minutes:g} min of training each, {args.threads} threads, "
        f"{cpu_name()}; val at 360x480",
        "",
        "| recipe | images seen | train s | CPU s | val mIoU | pixel acc | mean acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['images_seen']} | {r['train_seconds']:.0f} | "
            f"{r['train_cpu_seconds']:.0f} | {r['val_miou']:.4f} | {r['val_pixel_acc']:.4f} | "
            f"{r['val_mean_acc']:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "recipes.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
