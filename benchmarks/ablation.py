"""Which training features pay on a CPU: each one against the plain recipe, same model,
same wall-clock budget, scored on CamVid val.

    python benchmarks/ablation.py --data $EDGESEG_DATA [--model fastscnn] [--minutes 20]
        [--variants plain,aux,ohem,ema,kd,ls,small] [--teacher erfnet_camvid]
        [--work runs/ablation]

Variants (overrides of ``configs/compare_frontier.yaml``'s recipe):

==========  =======================================================================
``plain``   the recipe as it is
``aux``     ``train.aux_weight=0.4`` (models with auxiliary heads: fastscnn, bisenetv2)
``ohem``    ``train.loss=ohem``
``ema``     ``train.ema=0.999``
``kd``      ``train.teacher=TEACHER`` (pixel-wise distillation, T = 4)
``ls``      ``train.label_smoothing=0.1``
``small``   ``data.crop_size=[288,384]``: more steps for the same time
==========  =======================================================================

Each variant's epochs are planned from a probe of its step on this machine and
``train.max_minutes`` stops it at the budget (a cut schedule is reported). Resumable: an
interrupted variant resumes from its ``last.pt``. Writes ``benchmarks/results/
ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from edgeseg.config import apply_overrides, config_from_dict, config_to_dict
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import train
from edgeseg.workflows.compare import fit_to_budget, load_compare_config

ROOT = Path(__file__).parents[1]
VARIANTS = {
    "plain": [],
    "aux": ["train.aux_weight=0.4"],
    "ohem": ["train.loss=ohem"],
    "ema": ["train.ema=0.999"],
    "kd": ["train.teacher={teacher}"],
    "ls": ["train.label_smoothing=0.1"],
    "small": ["data.crop_size=[288, 384]"],
}


def run_variant(base: dict, name: str, args: argparse.Namespace) -> dict:
    """Train and score one variant (resuming it if it was interrupted)."""
    items = [o.format(teacher=args.teacher) for o in VARIANTS[name]]
    run = Path(args.work) / name
    items += [f"model.name={args.model}", f"train.out={run}", "train.threads=2"]
    recipe = config_from_dict(apply_overrides(copy.deepcopy(base), items))
    resume = (run / "last.pt").is_file()
    plan = {} if resume else fit_to_budget(recipe, args.minutes * 60)
    if resume:
        recipe = config_from_dict(
            apply_overrides(json.loads((run / "recipe.json").read_text()), [])
        )
    else:
        run.mkdir(parents=True, exist_ok=True)
        (run / "recipe.json").write_text(json.dumps(config_to_dict(recipe)))
    res = train(recipe, resume=resume)
    best = run / "best.pt"
    metrics = evaluate(best if best.is_file() else run, recipe.data.root, "val")
    return {
        "variant": name, "overrides": items[:-3], "epochs": res.epochs_done,
        "planned_epochs": recipe.train.epochs, "stopped_by_budget": res.stopped_by_budget,
        "train_seconds": sum(r.get("epoch_seconds", 0) for r in res.history),
        "miou": metrics["miou"], "plan": plan,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CamVid root (default: $EDGESEG_DATA)")
    p.add_argument("--model", default="fastscnn")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per variant")
    p.add_argument("--variants", default="plain,aux,ohem,ema,kd,ls,small")
    p.add_argument("--teacher", default="erfnet_camvid", help="kd: the teacher checkpoint")
    p.add_argument("--work", default="runs/ablation")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablation"))
    args = p.parse_args(argv)
    items = [f"recipe.data.root={args.data}"] if args.data else []
    cfg = load_compare_config(ROOT / "configs" / "compare_frontier.yaml", items)
    base = config_to_dict(cfg.recipe)
    rows = [run_variant(base, v, args) for v in args.variants.split(",")]
    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps({"model": args.model, "minutes": args.minutes, "rows": rows}, indent=2)
    )
    lines = [f"{args.model} on CamVid val, {args.minutes:g} min of training per variant\n",
             "| variant | val mIoU | epochs | schedule finished | train s |",
             "| --- | ---: | ---: | :---: | ---: |"]  # fmt: skip
    for r in rows:
        done = "no" if r["stopped_by_budget"] else "yes"
        lines.append(f"| {r['variant']} | {r['miou']:.4f} | {r['epochs']}/{r['planned_epochs']} "
                     f"| {done} | {r['train_seconds']:.0f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
