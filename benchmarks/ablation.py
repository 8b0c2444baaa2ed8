"""Which training features pay on a CPU: each one against the plain recipe, same model,
same wall-clock budget, scored on CamVid val.

    python benchmarks/ablation.py --data $EDGESEG_DATA [--model fastscnn] [--minutes 20]
        [--variants plain,aux,ohem,ema,kd,ls,small,fp32,seed1,seed2] [--teacher erfnet_camvid]
        [--work runs/ablation]

Variants (overrides of ``configs/compare_frontier.yaml``'s recipe):

==========  =======================================================================
``plain``   the recipe as it is
``aux``     ``train.aux_weight=0.4`` (models with auxiliary heads: fastscnn, ddrnet23_slim, ...)
``ohem``    ``train.loss=ohem``
``ema``     ``train.ema=0.999``
``kd``      ``train.teacher=TEACHER`` (pixel-wise distillation, T = 4)
``ls``      ``train.label_smoothing=0.1``
``small``   ``data.crop_size=[288,384]``: more steps for the same time
``fp32``    ``train.bf16=false``: without the recipe's bfloat16 autocast (what bf16 buys)
``seed1``   ``train.seed=1``: the plain recipe again at another seed (with ``seed2``, the
            noise floor: a feature's gain smaller than plain's spread across seeds is none)
``seed2``   ``train.seed=2``
==========  =======================================================================

The budget is wall time on an idle machine, turned into work before anything trains
(as in ``benchmarks/frontier.py``): each variant's training step and validation are
probed here, back to back, and its budget becomes the epochs that fit the time (kept in
``WORK/plan.json``; ``--plan-only`` stops there). Training then runs exactly that work
whatever else the machine does: a busy machine slows the ablation, it does not change its
verdict. Resumable: run it again and an interrupted variant resumes from its ``last.pt``.
Writes ``benchmarks/results/ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from edgeseg.config import Config, apply_overrides, config_from_dict, config_to_dict
from edgeseg.cpu import cpu_name
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import train
from edgeseg.errors import DivergedError
from edgeseg.utils import atomic_write_json, atomic_write_text
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
    "fp32": ["train.bf16=false"],
    "seed1": ["train.seed=1"],
    "seed2": ["train.seed=2"],
}
# A variant whose step is the plain step's (only the seed differs) takes plain's plan
# rather than a probe of its own: the two then train the same epochs, so their spread is
# the seed's alone, not the probe's.
SAME_WORK = {"seed1": "plain", "seed2": "plain"}


def _recipe(base: dict, name: str, args: argparse.Namespace) -> tuple[Config, list[str]]:
    """The variant's recipe (its overrides on the base recipe) and those overrides."""
    items = [o.format(teacher=args.teacher) for o in VARIANTS[name]]
    run = Path(args.work) / name
    fixed = [f"model.name={args.model}", f"train.out={run}", "train.threads=2"]
    return config_from_dict(apply_overrides(copy.deepcopy(base), items + fixed)), items


def plan(base: dict, names: list[str], args: argparse.Namespace) -> dict:
    """Epochs per variant that fit ``args.minutes`` here, probed once and kept in
    ``WORK/plan.json`` (a variant added later is probed alone; the others keep theirs)."""
    path = Path(args.work) / "plan.json"
    kept = {"minutes": args.minutes, "model": args.model, "cpu": cpu_name(), "variants": {}}
    if path.is_file():
        kept = json.loads(path.read_text())
        if (kept["minutes"], kept["model"]) != (args.minutes, args.model):
            raise SystemExit(
                f"{path}: planned for {kept['model']} at {kept['minutes']:g} "
                f"min, not {args.model} at {args.minutes:g}; use another --work"
            )
    for name in [n for n in names if n not in kept["variants"]]:
        if SAME_WORK.get(name) in kept["variants"]:
            kept["variants"][name] = dict(kept["variants"][SAME_WORK[name]])
        else:
            recipe, _ = _recipe(base, name, args)
            probe = fit_to_budget(recipe, args.minutes * 60, name=f"{args.model} ({name})")
            kept["variants"][name] = {
                "epochs": recipe.train.epochs,
                "eval_every": recipe.train.eval_every,
                "step_s": probe["step_s"],
                "steps_per_epoch": probe["steps_per_epoch"],
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, kept)  # after each probe: an interrupted plan resumes
    return kept


def run_variant(base: dict, name: str, planned: dict, args: argparse.Namespace) -> dict:
    """Train one variant for its planned epochs (resuming it if interrupted) and score it."""
    recipe, items = _recipe(base, name, args)
    recipe.train.epochs = planned["epochs"]
    recipe.train.eval_every = planned["eval_every"]
    recipe.train.max_minutes, recipe.train.replan = None, False  # the work is fixed
    run = Path(recipe.train.out)
    row = {
        "variant": name,
        "overrides": items,
        "planned_epochs": planned["epochs"],
        "step_s": planned["step_s"],
    }
    try:
        res = train(recipe, resume=(run / "last.pt").is_file())
    except DivergedError as e:  # a run that diverges is a result too: the row says where
        return {**row, **_from_log(run), "miou": None, "diverged": str(e).split(";")[0]}
    best = run / "best.pt"
    metrics = evaluate(best if best.is_file() else run, recipe.data.root, "val")
    return {**row, **_from_log(run), "epochs": res.epochs_done, "miou": metrics["miou"]}


def _from_log(run: Path) -> dict:
    """Epochs done, wall time and updates skipped for non-finite gradients (bf16), from
    the run's ``log.jsonl``."""
    done = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return {
        "epochs": len(done),
        "train_seconds": sum(r.get("epoch_seconds", 0) for r in done),
        "skipped_steps": sum(r.get("skipped_steps", 0) for r in done),
    }


def write_results(rows: list[dict], args: argparse.Namespace) -> str:
    """Write ``rows`` to ``args.out``.{json,md} (each variant against plain, and the spread
    of plain's seeds: the noise floor) and return the markdown table."""
    out = Path(args.out)
    atomic_write_json(
        out.with_suffix(".json"), {"model": args.model, "minutes": args.minutes, "rows": rows}
    )
    base = next((r["miou"] for r in rows if r["variant"] == "plain"), None)
    lines = [
        f"{args.model} on CamVid val, {args.minutes:g} min of training per variant\n",
        "(epochs: what fits that time on an idle machine, from a probe of each "
        "variant's step; val mIoU of the run's best checkpoint)\n",
        "| variant | overrides | val mIoU | vs plain | epochs | skipped steps | step s | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        score = r.get("diverged") or f"{r['miou']:.4f}"
        delta = "" if r["miou"] is None or base is None else f"{r['miou'] - base:+.4f}"
        lines.append(
            f"| {r['variant']} | {' '.join(r['overrides']) or '-'} | {score} "
            f"| {delta} | {r['epochs']}/{r['planned_epochs']} "
            f"| {r.get('skipped_steps', 0)} | {r['step_s']:.2f} "
            f"| {r['train_seconds']:.0f} |"
        )
    seeds = [r["miou"] for r in rows if r["variant"] in ("plain", *SAME_WORK) and r["miou"]]
    if len(seeds) > 1:
        lines.append(
            f"\nplain recipe across {len(seeds)} seeds: {min(seeds):.4f} to "
            f"{max(seeds):.4f} (spread {max(seeds) - min(seeds):.4f})"
        )
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CamVid root (default: $EDGESEG_DATA)")
    p.add_argument("--model", default="fastscnn")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--teacher", default="erfnet_camvid", help="kd: the teacher checkpoint")
    p.add_argument("--work", default="runs/ablation")
    p.add_argument("--plan-only", action="store_true", help="probe and plan, do not train")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablation"))
    args = p.parse_args(argv)
    items = [f"recipe.data.root={args.data}"] if args.data else []
    cfg = load_compare_config(ROOT / "configs" / "compare_frontier.yaml", items)
    base = config_to_dict(cfg.recipe)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    kept = plan(base, names, args)
    if args.plan_only:
        print(json.dumps(kept, indent=2))
        return 0
    rows: list[dict] = []
    for v in names:  # the table is rewritten after each variant: an interrupted run shows
        rows.append(run_variant(base, v, kept["variants"][v], args))  # what it measured
        print(write_results(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
