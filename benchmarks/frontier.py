"""The accuracy-latency front on CamVid: every candidate, one recipe, one budget.

    python benchmarks/frontier.py --data $EDGESEG_DATA [--budget 10m] [--models a,b,...]
        [--config configs/compare_frontier.yaml] [--work runs/frontier] [--rebench | --render]

Runs ``edgeseg compare`` with ``configs/compare_frontier.yaml`` and renders its results;
it writes nothing into the comparison's files. The config plans ahead (``plan_ahead``):
the budget is wall time on an idle machine, turned by compare into work before anything
trains (each model's step probed here), so training runs the same work whatever else the
machine does later; each model trains in the faster of bf16 autocast and fp32 on this
CPU (``precision: auto``), and one that diverges in bf16 is trained again in fp32.
The comparison is resumable: run it again
to continue; ``--rebench`` re-measures every model's backends back to back, for a final
side-by-side latency on a quiet machine), then writes
``benchmarks/results/frontier.{json,md}`` and ``frontier.png``: val mIoU, the best
backend's latency (the fastest within 0.01 mIoU of eager, in fresh processes), FLOPs
and parameters of each model, and the Pareto front (no other model is both more
accurate and faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.utils import atomic_write_json, atomic_write_text
from edgeseg.workflows.compare import compare, load_compare_config
from edgeseg.workflows.plan import plan_ahead
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


def _write(res: dict, out: Path, work: Path) -> None:
    """``OUT.json``, ``OUT.md`` and ``OUT.png`` from a comparison's results; a model not
    done yet (still to train, or failed) is named under the table, not scored."""
    rows = _rows(res)
    models = res["models"]
    for r in rows:  # the numeric setting each model trained in (compare's precision: auto)
        r["precision"] = "bf16" if models[r["model"]].get("train", {}).get("bf16") else "fp32"
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
        "plan": res.get("plan"),
        "rows": rows,
        "not_done": missing,
    }
    atomic_write_json(out.with_suffix(".json"), keep)
    table = _table(rows, res)
    if missing:
        why = ", ".join(f"{n} ({reason})" for n, reason in missing.items())
        table += f"\nNot in the table yet: {why}\n"
    atomic_write_text(out.with_suffix(".md"), table)
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
        if not (work / "results.json").is_file():
            raise EdgesegError(f"--work {work}: no frontier run there (results.json)")
        _write(json.loads((work / "results.json").read_text()), Path(args.out), work)
        return 0
    if args.plan_only:
        plan = plan_ahead(cfg.models, cfg.budget, cfg.recipe, cfg.threads, cfg.out, cfg.precision)
        print(json.dumps(plan, indent=2))
        return 0
    cfg.rebench = args.rebench
    _write(compare(cfg), Path(args.out), Path(cfg.out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgesegError as e:  # bad input: one line, exit 2
        sys.exit(print(f"frontier: error: {e}", file=sys.stderr) or 2)
