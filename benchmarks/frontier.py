"""The accuracy-latency front on CamVid: every candidate, one recipe, one budget.

    python benchmarks/frontier.py --data $EDGESEG_DATA [--budget 10m] [--models a,b,...]
        [--config configs/compare_frontier.yaml] [--work runs/frontier] [--rebench | --render]

The budget is wall time on an idle machine, turned into work before anything trains:
each model's training step and validation are probed here back to back (median after
warm-up), and its budget becomes the epochs that fit the time. Training then runs the
same work whatever else the machine does (a noisy machine slows the benchmark, it does
not change its verdict). Each model trains in the faster of bf16 autocast and fp32 on
this CPU, and compare itself trains one that diverges in bf16 again in fp32.
Runs ``edgeseg compare`` with ``configs/compare_frontier.yaml`` (resumable: run it again
to continue; ``--rebench`` re-measures every model's backends back to back, for a final
side-by-side latency on a quiet machine), then writes
``benchmarks/results/frontier.{json,md}`` and ``frontier.png``: val mIoU, the best
backend's latency (the fastest within 0.01 mIoU of eager, in fresh processes), FLOPs
and parameters of each model, and the Pareto front (no other model is both more
accurate and faster).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

from edgeseg.cpu import cpu_name
from edgeseg.engine.train import step_seconds
from edgeseg.errors import EdgesegError
from edgeseg.utils import atomic_write_json
from edgeseg.workflows.compare import (
    compare,
    fit_to_budget,
    load_compare_config,
    parse_budget,
    with_overrides,
)
from edgeseg.workflows.report import pareto_front

RESULTS = Path(__file__).parent / "results"


def _rows(res: dict) -> list[dict]:
    rows = []
    for name in res["order"]:
        e = res["models"].get(name, {})
        if e.get("status") != "done":
            continue
        bench = e.get("bench") or {}
        best = bench.get("best")
        ms = bench["backends"][best]["latency_ms"]["median"] if best else None
        train = e.get("train") or {}
        rows.append(
            {
                "model": name,
                "miou": e["metrics"]["miou"],
                "best_backend": best,
                "best_ms": ms,
                "gflops": e["profile"]["flops"] / 1e9,
                "params": e["profile"]["params"],
                "epochs": train.get("epochs_done"),
                "planned_epochs": train.get("epochs"),
                "schedule_finished": not train.get("stopped_by_budget", False),
            }
        )
    pts = [(r["best_ms"], r["miou"]) for r in rows if r["best_ms"] is not None]
    front = set(pareto_front(pts))
    scored = [r for r in rows if r["best_ms"] is not None]
    for i, r in enumerate(scored):
        r["pareto"] = i in front
    return rows


BF16_MARGIN = 0.9  # bf16 only where its step takes under 90 % of fp32's: it rounds


def _precision(recipe, name: str) -> tuple[list[str], dict]:
    """The model's faster numeric setting here: the recipe's bf16 autocast, or fp32.

    bf16 halves a dense network's step on a CPU with bf16 units, but depthwise and
    grouped convolutions have no fast bf16 kernels and run slower than in fp32, so one
    setting for every model would hand some of them fewer epochs for nothing. Each model
    gets the faster of the two (its step probed in each), the recipe being otherwise the
    same; a bf16 probe whose loss overflows keeps fp32.
    """
    if not recipe.train.bf16:
        return [], {}
    times = {}
    for bf16 in (False, True):
        r = copy.deepcopy(recipe)
        r.train.bf16 = bf16
        try:
            times["bf16" if bf16 else "fp32"] = step_seconds(r)
        except EdgesegError as e:  # e.g. a loss that is nan in bf16
            print(f"{name}: bf16 probe failed ({e}); fp32", flush=True)
            times["bf16"] = None
    keep = times["bf16"] is not None and times["bf16"] < BF16_MARGIN * times["fp32"]
    return ([] if keep else ["train.bf16=false"]), times


def _plan(cfg) -> dict:
    """Each model's time budget as epochs, probed on this machine before any training
    (kept in OUT/plan.json, so a resumed benchmark trains to the same plan)."""
    path = Path(cfg.out) / "plan.json"
    budget = parse_budget(cfg.budget)
    if budget.kind != "time":
        return {"budget": str(budget), "budgets": {m: cfg.budget for m in cfg.models}}
    plan = {"budget": str(budget), "cpu": cpu_name(), "budgets": {}, "probe": {}}
    if path.is_file():  # a model added later is probed alone; the others keep their plan
        plan = json.loads(path.read_text())
        if plan["budget"] != str(budget):
            raise SystemExit(f"{path}: planned for {plan['budget']}, not {budget}")
    plan.setdefault("overrides", {})
    for name in [m for m in cfg.models if m not in plan["budgets"]]:
        recipe = copy.deepcopy(cfg.recipe)
        recipe.model.name, recipe.train.threads = name, cfg.threads
        items, times = (
            (plan["overrides"][name], {})
            if name in plan["overrides"]
            else (_precision(recipe, name))
        )
        if items:
            plan["overrides"][name] = items
            recipe.train.bf16 = False
        p = fit_to_budget(recipe, budget.value, name=name)
        plan["budgets"][name] = f"{recipe.train.epochs} epochs"
        plan["probe"][name] = {
            "step_s": p["step_s"],
            "steps_per_epoch": p["steps_per_epoch"],
            "precision_step_s": times,
        }
        precision = "bf16" if recipe.train.bf16 else "fp32"
        print(
            f"{name}: {p['step_s']:.2f} s per step in {precision} -> {recipe.train.epochs} epochs",
            flush=True,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, plan)  # after each probe: an interrupted plan resumes
    return plan


def _drop_bench(out: Path) -> None:
    """Forget every model's bench and preview stages, so they run again back to back."""
    path = out / "results.json"
    if not path.is_file():
        return
    res = json.loads(path.read_text())
    for e in res["models"].values():
        if e.get("status") == "done":
            for key in ("bench", "preview"):
                e.pop(key, None)
                e.get("stages", {}).pop(key, None)
            e["status"] = "pending"
    path.write_text(json.dumps(res, indent=2))


def _table(rows: list[dict], res: dict) -> str:
    head = (
        f"CamVid val (101 images), {res['size'][0]}x{res['size'][1]}, "
        f"{res.get('machine', {}).get('cpu', '')}; one recipe, one training budget each "
        f"({res.get('config', {}).get('budget')}).\n\n"
    )
    lines = [
        "| model | val mIoU | best backend | best ms | GFLOPs | params | epochs | "
        "trained in | Pareto |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | :---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['miou']:.4f} | {r['best_backend']} | {r['best_ms']:.1f} | "
            f"{r['gflops']:.2f} | {r['params']:,} | {r['epochs']}/{r['planned_epochs']} | "
            f"{r.get('precision', '')} | {'yes' if r.get('pareto') else ''} |"
        )
    return head + "\n".join(lines) + "\n"


def _write(res: dict, plan: dict, out: Path, work: Path) -> None:
    """``OUT.json``, ``OUT.md`` and ``OUT.png`` from a comparison's results; a model not
    done yet (still to train, or failed) is named under the table, not scored."""
    rows = _rows(res)
    bf16 = (res.get("config") or {}).get("recipe", {}).get("train", {}).get("bf16", False)
    for r in rows:  # the numeric setting each model trained in (see _precision)
        fp32 = "train.bf16=false" in plan.get("overrides", {}).get(r["model"], [])
        r["precision"] = "bf16" if bf16 and not fp32 else "fp32"
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = {n: res["models"].get(n, {}) for n in res["order"]}
    missing = {
        n: e.get("error") or e.get("status", "pending")
        for n, e in entries.items()
        if e.get("status") != "done"
    }
    keep = {
        "config": res.get("config"),
        "machine": res.get("machine"),
        "plan": plan,
        "rows": rows,
        "not_done": missing,
    }
    atomic_write_json(out.with_suffix(".json"), keep)
    table = _table(rows, res)
    if missing:
        why = ", ".join(f"{n} ({reason})" for n, reason in missing.items())
        table += f"\nNot in the table yet: {why}\n"
    out.with_suffix(".md").write_text(table)
    if (work / "pareto.png").is_file():
        shutil.copyfile(work / "pareto.png", out.with_suffix(".png"))
    print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=str(Path(__file__).parents[1] / "configs/compare_frontier.yaml")
    )
    p.add_argument("--data", default=None, help="CamVid root (default: $EDGESEG_DATA)")
    p.add_argument("--budget", default=None, help="training budget per model (config: 10m)")
    p.add_argument("--models", default=None, help="comma-separated subset")
    p.add_argument("--work", default=None, help="comparison folder (runs/frontier)")
    p.add_argument("--out", default=str(RESULTS / "frontier"), help="results stem")
    p.add_argument("--plan-only", action="store_true", help="probe and plan, do not train")
    p.add_argument(
        "--rebench",
        action="store_true",
        help="re-measure every trained model's backends back to back",
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="write the table from WORK's results so far; train nothing",
    )
    args = p.parse_args(argv)
    items = [f"recipe.data.root={args.data}"] if args.data else []
    items += [f"budget={args.budget}"] if args.budget else []
    items += [f"models={json.dumps(args.models.split(','))}"] if args.models else []
    items += [f"out={args.work}"] if args.work else []
    cfg = load_compare_config(args.config, items)
    if args.render:
        work = Path(cfg.out)
        if not (work / "results.json").is_file() or not (work / "plan.json").is_file():
            raise EdgesegError(f"--work {work}: no frontier run there (results.json, plan.json)")
        res = json.loads((work / "results.json").read_text())
        _write(res, json.loads((work / "plan.json").read_text()), Path(args.out), work)
        return 0
    plan = _plan(cfg)
    if args.plan_only:
        print(json.dumps(plan, indent=2))
        return 0
    cfg = with_overrides(
        cfg,
        [
            f"budgets={json.dumps(plan['budgets'])}",
            f"overrides={json.dumps(plan.get('overrides', {}))}",
        ],
    )
    if args.rebench:
        _drop_bench(Path(cfg.out))
    _write(compare(cfg), plan, Path(args.out), Path(cfg.out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgesegError as e:  # bad input: one line, exit 2
        sys.exit(print(f"frontier: error: {e}", file=sys.stderr) or 2)
