"""What each compression buys on CamVid: size, MACs, latency, accuracy (issue 6's targets).

Three experiments, each with a stated budget, written to ``benchmarks/results/compression.json``
and printed as tables:

1. **Structured pruning to 50 % of channels** (Squeeze U-Net, ERFNet): latency with the
   best of ``channels_last`` / ``ort`` before and after, measured side by side in one run,
   and mIoU before and after a short fine-tune (target: >= 1.5x lower latency).
2. **Sparsification to 60 % plus int8** (ERFNet): the zipped int8 ONNX against the zipped
   dense fp32 checkpoint (seed 003's claim: >= 70 % smaller), and the mIoU cost.
3. **Gradual grouping to DG2** (ESSNet): a layer-D network trained with gradual grouping
   for the budget, against ESSNet-DG2 trained from scratch for the same budget.

Each source is a trained checkpoint given with ``--source MODEL=CKPT`` (e.g. the shipped
``erfnet_camvid``); a model without one is first trained from scratch for ``--minutes``.

    python benchmarks/compression.py --data ../shared/data/camvid --minutes 20 \\
        --source erfnet=erfnet_camvid
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import yaml

from edgeseg.config import Config, load_config
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import train
from edgeseg.utils import atomic_write_json, parse_size
from edgeseg.workflows.compare import fit_to_budget
from edgeseg.workflows.compress import compress_checkpoint

RESULTS = Path(__file__).parent / "results"


def _recipe(model: str, out: Path, data: str, extra: list[str]) -> Config:
    """The shipped-weights recipe (``configs/camvid_fast.yaml``) for ``model``."""
    return load_config(
        Path(__file__).parent.parent / "configs" / "camvid_fast.yaml",
        [
            f"model.name={model}",
            f"data.root={data}",
            "data.train_split=train",
            f"train.out={out}",
            "train.threads=2",
            "train.progress=false",
            "train.tensorboard=false",
            *extra,
        ],
    )


def _train_for(
    model: str, out: Path, data: str, minutes: float, extra: list[str], epochs: int | None = None
) -> tuple[Path, int]:
    """Train ``model`` from scratch for ``minutes`` (or exactly ``epochs``); resumable.

    The epochs come from a probe of this model's step here (``fit_to_budget``), so the
    learning-rate and grouping schedules complete; there is no wall-clock cut, which
    would leave a gradual-grouping run un-extracted.
    """
    cfg = _recipe(model, out, data, extra)
    if (out / "summary.json").is_file() or (out / "last.pt").is_file():
        saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
        epochs = int(saved["train"]["epochs"])
    elif epochs is None:
        epochs = int(fit_to_budget(cfg, minutes * 60)["epochs"])
    cfg.train.epochs, cfg.train.max_minutes = epochs, None
    cfg.train.eval_every = max(1, epochs // 4)
    if not (out / "summary.json").is_file():
        train(cfg, resume=(out / "last.pt").is_file())
    best = out / "best.pt"
    return (best if best.is_file() else out / "last.pt"), epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", default=os.environ.get("EDGESEG_DATA"), help="CamVid root ($EDGESEG_DATA)"
    )
    p.add_argument("--minutes", type=float, default=20.0, help="budget of each training")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs after pruning")
    p.add_argument("--source", action="append", default=[], help="MODEL=CHECKPOINT")
    p.add_argument("--work", default="runs/compression", help="runs and artefacts")
    p.add_argument("--json", default=str(RESULTS / "compression.json"))
    p.add_argument("--size", default="360x480", help="latency and accuracy size HxW")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for every training and fine-tune (repeatable)",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    size = parse_size(args.size)
    sources = dict(s.split("=", 1) for s in args.source)
    res: dict = {"minutes": args.minutes, "fine_tune_epochs": args.epochs}
    path = Path(args.json)
    if path.is_file():
        res = {**json.loads(path.read_text()), **res}

    def source(model: str) -> str:
        if model in sources:
            return sources[model]
        return str(
            _train_for(model, work / f"{model}-scratch", args.data, args.minutes, args.set)[0]
        )

    for model in ("squeeze_unet", "erfnet"):
        key = f"prune50/{model}"
        if key not in res:
            res[key] = compress_checkpoint(
                source(model),
                "prune",
                work / key,
                data=args.data,
                epochs=args.epochs,
                ratio=0.5,
                backends=("channels_last", "ort"),
                overrides=["train.progress=false", "train.tensorboard=false", *args.set],
                size=size,
            )
            atomic_write_json(path, res)
    if "sparsify60+int8/erfnet" not in res:
        res["sparsify60+int8/erfnet"] = compress_checkpoint(
            source("erfnet"),
            "sparsify",
            work / "sparsify-erfnet",
            data=args.data,
            epochs=args.epochs,
            sparsity=0.6,
            backends=("channels_last",),
            overrides=["train.progress=false", "train.tensorboard=false", *args.set],
            size=size,
        )
        atomic_write_json(path, res)
    if "grouping/essnet" not in res:
        # Same epochs for both arms, planned on the slower one (dense weights under a mask).
        gradual, epochs = _train_for(
            "essnet",
            work / "essnet-gradual-dg2",
            args.data,
            args.minutes,
            ["compress.groups=2", "model.kwargs={layer: D}", *args.set],
        )
        scratch, _ = _train_for(
            "essnet",
            work / "essnet-dg2-scratch",
            args.data,
            args.minutes,
            ["model.kwargs={layer: DG2}", *args.set],
            epochs=epochs,
        )
        res["grouping/essnet"] = {
            name: evaluate(ck, args.data, "val", input_size=size, threads=2)["miou"]
            for name, ck in (("gradual_dg2", gradual), ("scratch_dg2", scratch))
        }
        res["grouping/essnet"]["epochs"] = epochs
        res["grouping/essnet"]["minutes"] = {
            name: sum(
                float(json.loads(line).get("epoch_seconds", 0)) / 60
                for line in (work / run / "log.jsonl").read_text().splitlines()
                if line.strip()
            )
            for name, run in (
                ("gradual_dg2", "essnet-gradual-dg2"),
                ("scratch_dg2", "essnet-dg2-scratch"),
            )
        }
        atomic_write_json(path, res)

    print(f"budget: {args.minutes} min per training, {args.epochs} fine-tuning epochs")
    print("| experiment | params | MACs | zip | best ms before -> after | speed-up | mIoU |")
    print("|---|---|---|---|---|---|---|")
    for key, r in res.items():
        if not isinstance(r, dict) or "before" not in r:
            continue
        b, a, q = r["before"], r["after"], r["ratios"]
        print(
            f"| {key} | {q['params']:.2f}x | {q['macs']:.2f}x | {q['zip_bytes']:.2f}x | "
            f"{b.get('best_ms', 0):.0f} -> {a.get('best_ms', 0):.0f} | "
            f"{q.get('speedup_best', 0):.2f}x | {b.get('miou', 0):.3f} -> {a.get('miou', 0):.3f} |"
        )
    sp = res.get("sparsify60+int8/erfnet")
    if sp and "int8_zip_vs_fp32_zip" in sp["ratios"]:
        shrink = 1 - sp["ratios"]["int8_zip_vs_fp32_zip"]
        print(f"sparsify 60 % + int8, zipped vs dense fp32 zipped: {100 * shrink:.1f} % smaller")
    g = res.get("grouping/essnet")
    if g:
        print(
            f"ESSNet DG2, {g.get('epochs')} epochs each: gradual {g['gradual_dg2']:.4f} "
            f"vs from scratch {g['scratch_dg2']:.4f}"
        )


if __name__ == "__main__":
    main()
