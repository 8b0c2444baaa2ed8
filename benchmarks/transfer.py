"""Small data: ImageNet-pretrained encoders against the best from-scratch net, equal CPU time.

    python benchmarks/transfer.py --data $EDGESEG_DATA [--minutes 15] [--fractions 0.1,0.25,1]
        [--pretrained ppliteseg_efficientnet_lite0] [--scratch ddrnet23_slim]
        [--work runs/transfer] [--render]

For each fraction of CamVid's train split (a fixed-seed random subset, the same images for
every model) each model trains with its shipped recipe (``configs/``; the pretrained ones
from ImageNet weights) for the same wall time on this CPU: the budget is probed into epochs
by the library's planner (``edgeseg.workflows.compare.fit_to_budget``), so every schedule
completes inside it. Validation is always the whole val split. Writes
``benchmarks/results/transfer.{json,md}`` and ``transfer.png`` (val mIoU against training
minutes, one panel per fraction), naming the CPU. Resumable: a finished run is read back,
an interrupted one continues (``--resume``); ``--render`` writes the table from what is done.
Subsets are list files in the work folder pointing at the data; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from edgeseg.config import load_config
from edgeseg.cpu import cpu_name
from edgeseg.data.folder import read_list_file
from edgeseg.engine.train import train
from edgeseg.errors import EdgesegError
from edgeseg.utils import atomic_write_json, atomic_write_text
from edgeseg.workflows.compare import fit_to_budget

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Each model's recipe: its shipped one.
RECIPES = {
    "ppliteseg_efficientnet_lite0": "configs/ppliteseg_lite0_camvid.yaml",
    "ddrnet23_slim": "configs/ddrnet_camvid.yaml",
}
#: CPU flags with native bf16 arithmetic: without them bf16 autocast is emulated (slower).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16() -> bool:
    """Whether this CPU has bf16 units (else the recipes run in fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(f in flags.split() for f in BF16_FLAGS)


def write_subset(data: Path, work: Path, fraction: float, seed: int) -> Path:
    """``work/data_P/`` with ``train.txt`` (a fixed-seed subset) and ``val.txt`` (all of
    val), both of absolute paths into ``data``. Returns the folder."""
    pairs = read_list_file(data, "train")
    k = max(8, round(fraction * len(pairs)))
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), k))
    root = work / f"data_{round(fraction * 100)}"
    root.mkdir(parents=True, exist_ok=True)
    lines = {
        "train": [pairs[i] for i in chosen],
        "val": read_list_file(data, "val"),
    }
    for split, items in lines.items():
        text = "".join(f"{a.resolve()} {b.resolve()}\n" for a, b in items)
        atomic_write_text(root / f"{split}.txt", text)
    return root


def run_one(model: str, root: Path, run: Path, minutes: float) -> dict:
    """Train ``model`` on ``root`` for ``minutes`` here (or finish/read its run)."""
    summary = run / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    resume = (run / "last.pt").is_file()
    if resume:
        cfg = load_config(run / "config.yaml", [])
    else:
        bf16 = str(native_bf16()).lower()
        overrides = [f"data.root={root}", f"train.out={run}", f"train.bf16={bf16}"]
        overrides += ["train.progress=false", "train.tensorboard=false"]
        cfg = load_config(ROOT / RECIPES[model], overrides)
        cfg.train.epochs = 1000  # the cap of the plan: the budget decides
        plan = fit_to_budget(cfg, minutes * 60, name=model)
        print(
            f"{model} on {root.name}: {plan['step_s']:.2f} s/step -> {cfg.train.epochs} epochs",
            flush=True,
        )
    result = train(cfg, resume=resume)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    curve, spent = [], 0.0
    for r in rows:
        spent += r.get("epoch_seconds", 0.0) + r.get("eval_seconds", 0.0)
        if "val_miou" in r:
            curve.append([round(spent / 60, 2), r["val_miou"]])
    out = {
        "model": model,
        "miou": curve[-1][1] if curve else None,
        "epochs": result.epochs_done,
        "minutes": round(spent / 60, 2),
        "curve": curve,
        "train_images": len(read_list_file(root, "train")),
    }
    atomic_write_json(summary, out)
    return out


def render(results: dict, path_md: Path, path_png: Path) -> None:
    """The table (markdown) and the plot (val mIoU against training minutes)."""
    fr = results["fractions"]
    lines = [
        f"# Transfer: ImageNet encoders against training from scratch ({results['cpu']})",
        "",
        f"Equal wall time per run: {results['minutes']} min of training on this CPU, "
        "CamVid val (101 images) for every row.",
        "",
        "| train images | " + " | ".join(results["models"]) + " | gain (points) |",
        "| ---: |" + " ---: |" * (len(results["models"]) + 1),
    ]
    for key, runs in fr.items():
        mious = [runs.get(m, {}).get("miou") for m in results["models"]]
        n = next((r["train_images"] for r in runs.values()), "?")
        gain = f"{100 * (mious[0] - mious[-1]):+.1f}" if None not in (mious[0], mious[-1]) else "-"
        cells = " | ".join("-" if v is None else f"{v:.3f}" for v in mious)
        lines.append(f"| {n} ({key}) | {cells} | {gain} |")
    atomic_write_text(path_md, "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fr), figsize=(4.2 * len(fr), 3.4), sharey=True)
    for ax, (key, runs) in zip([axes] if len(fr) == 1 else axes, fr.items(), strict=True):
        for m, r in runs.items():
            if r.get("curve"):
                xs, ys = zip(*r["curve"], strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=m)
        ax.set_title(f"{key} of CamVid train")
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
    (axes if len(fr) == 1 else axes[0]).set_ylabel("val mIoU")
    (axes if len(fr) == 1 else axes[0]).legend(fontsize=8, loc="lower right")
    fig.suptitle(f"val mIoU against training time ({results['cpu']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="CamVid root (train.txt, val.txt)")
    ap.add_argument("--minutes", type=float, default=15.0, help="training minutes per run")
    ap.add_argument("--fractions", default="0.1,0.25,1", help="shares of the train split")
    ap.add_argument("--pretrained", default="ppliteseg_efficientnet_lite0")
    ap.add_argument("--scratch", default="ddrnet23_slim", help="the from-scratch reference")
    ap.add_argument("--work", default="runs/transfer", help="run folders (outside the repo)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    ap.add_argument("--render", action="store_true", help="only write what is done")
    args = ap.parse_args(argv)
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        print(f"--fractions: not numbers: {args.fractions!r}", file=sys.stderr)
        return 2
    if any(not 0 < f <= 1 for f in fractions) or args.minutes <= 0:
        print("--fractions must be in (0, 1] and --minutes positive", file=sys.stderr)
        return 2
    models = [args.pretrained, args.scratch]
    unknown = [m for m in models if m not in RECIPES]
    if unknown:
        print(f"no recipe for {unknown[0]} (known: {', '.join(RECIPES)})", file=sys.stderr)
        return 2
    work, data = Path(args.work), Path(args.data)
    results = {"cpu": cpu_name(), "minutes": args.minutes, "models": models, "fractions": {}}
    try:
        for f in fractions:
            key = f"{round(f * 100)} %"
            root = write_subset(data, work, f, args.seed)
            runs = results["fractions"].setdefault(key, {})
            for m in models:
                run = work / f"{m}_{round(f * 100)}"
                done = (run / "summary.json").is_file()
                if args.render and not done:
                    continue
                runs[m] = run_one(m, root, run, args.minutes)
    except EdgesegError as e:
        print(f"transfer: {e}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "transfer.json", results)
    render(results, RESULTS / "transfer.md", RESULTS / "transfer.png")
    print((RESULTS / "transfer.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
