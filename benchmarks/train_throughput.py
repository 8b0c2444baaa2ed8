"""Training throughput per model at 360x480 on this CPU, and the time of a CamVid epoch.

For each model and each numeric setting (fp32 NCHW, fp32 channels_last, and bf16 autocast
with channels_last when ``--bf16``) the benchmark times full training steps (forward,
cross-entropy, backward, AdamW step) on random batches, after warm-up. Settings are timed
in interleaved rounds so that the machine's drift hits all alike. It reports the median
step time, images/s, the wall and CPU seconds of one CamVid epoch (367 training images)
at that rate, and, separately, the data pipeline's cost per image (decode + augmentation)
measured on the real CamVid files when they are present.

Usage:
    python benchmarks/train_throughput.py [--models squeeze_unet,unet] [--size 360x480]
        [--batch-size 4] [--threads 2] [--steps 5] [--rounds 3] [--bf16] [--camvid PATH]

Writes ``benchmarks/results/train_throughput.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from edgeseg.cpu import cpu_name
from edgeseg.losses import SegmentationLoss
from edgeseg.models import create_model, list_models
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size

CAMVID_TRAIN = 367
DEFAULT_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def _settings(bf16: bool) -> dict[str, dict[str, Any]]:
    s = {
        "fp32_nchw": {"channels_last": False, "bf16": False},
        "fp32_channels_last": {"channels_last": True, "bf16": False},
    }
    if bf16:
        s["bf16_channels_last"] = {"channels_last": True, "bf16": True}
    return s


class _Runner:
    """One model in one setting, with its own optimiser, stepping on a fixed batch."""

    def __init__(
        self,
        name: str,
        size: tuple[int, int],
        batch: int,
        classes: int,
        channels_last: bool,
        bf16: bool,
    ) -> None:
        torch.manual_seed(0)
        self.mf = torch.channels_last if channels_last else torch.contiguous_format
        self.model = create_model(name, num_classes=classes).to(memory_format=self.mf).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.loss = SegmentationLoss("ce", ignore_index=255)
        self.x = torch.randn(batch, 3, *size).contiguous(memory_format=self.mf)
        self.y = torch.randint(0, classes, (batch, *size))
        self.bf16 = bf16

    def step(self) -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with ctx:
            out = self.model(self.x)
        loss = self.loss(out.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _time(runner: _Runner, steps: int) -> tuple[float, float]:
    """Median wall seconds per step and mean CPU seconds per step (all threads)."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(steps):
        t = time.perf_counter()
        runner.step()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), (time.process_time() - cpu0) / steps


def _data_cost(root: Path, size: tuple[int, int], n: int) -> dict[str, float] | None:
    """Seconds per image to decode and augment real CamVid files (None when absent)."""
    if not (root / "train.txt").is_file():
        return None
    from edgeseg.data import ListDataset, get_preset
    from edgeseg.data.transforms import train_transform

    info = get_preset("camvid")
    ds = ListDataset(root, "train", info, train_transform(size, ignore_index=info.ignore_index))
    ds[0]  # warm-up
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    lazy = (time.perf_counter() - t) / n
    cached = ListDataset(root, "train", info, ds.transform)
    cached._cache = [cached.load_pair(i) for i in range(n)]  # as in_memory=true does
    cached.samples = cached.samples[:n]
    t = time.perf_counter()
    for i in range(n):
        cached[i]
    return {"decode_and_augment_s": lazy, "augment_only_s": (time.perf_counter() - t) / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(list_models()))
    p.add_argument("--size", default="360x480")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    p.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    settings = _settings(args.bf16)
    results: list[dict[str, Any]] = []
    for name in names:
        runners = {
            k: _Runner(name, size, args.batch_size, args.classes, **v) for k, v in settings.items()
        }
        for r in runners.values():  # warm-up: allocator, oneDNN primitive caches
            r.step()
        walls: dict[str, list[float]] = {k: [] for k in runners}
        cpus: dict[str, list[float]] = {k: [] for k in runners}
        for rnd in range(args.rounds):
            order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
            for k in order:
                w, c = _time(runners[k], args.steps)
                walls[k].append(w)
                cpus[k].append(c)
        for k in runners:
            step_s = statistics.median(walls[k])
            cpu_s = statistics.median(cpus[k])
            ips = args.batch_size / step_s
            results.append(
                {
                    "model": name,
                    "setting": k,
                    "step_ms": 1000 * step_s,
                    "images_per_s": ips,
                    "camvid_epoch_wall_s": CAMVID_TRAIN / ips,
                    "camvid_epoch_cpu_s": CAMVID_TRAIN / args.batch_size * cpu_s,
                }
            )
            print(
                f"{name:14s} {k:20s} {1000 * step_s:8.0f} ms/step {ips:6.2f} img/s", file=sys.stderr
            )
    data = _data_cost(args.camvid, size, n=16)
    payload = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": str(torch.__version__),
        "input_size": list(size),
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "results": results,
        "data_pipeline_per_image": data,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "train_throughput.json", payload)
    lines = [
        f"Training throughput, {size[0]}x{size[1]}, batch {args.batch_size}, "
        f"{args.threads} threads, {cpu_name()} (median of {args.rounds} interleaved rounds of "
        f"{args.steps} steps)",
        "",
        "| model | setting | ms / step | images / s | CamVid epoch, wall s | CamVid epoch, CPU s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['step_ms']:.0f} | {r['images_per_s']:.2f} | "
            f"{r['camvid_epoch_wall_s']:.0f} | {r['camvid_epoch_cpu_s']:.0f} |"
        )
    if data:
        lines += [
            "",
            f"Data pipeline per CamVid image: decode + augment "
            f"{1000 * data['decode_and_augment_s']:.1f} ms, augment only (in-memory dataset) "
            f"{1000 * data['augment_only_s']:.1f} ms.",
        ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "train_throughput.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
