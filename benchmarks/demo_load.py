"""The demo's verdict on an idle and on a busy machine: same ranking, same scores.

    python benchmarks/demo_load.py [--work DIR]           # both runs, then the table
    python benchmarks/demo_load.py --idle A --busy B      # tabulate two finished demos

Runs ``edgeseg compare --demo`` twice into ``DIR/idle`` and ``DIR/busy``; during the
second, a competing CPU-bound process (two threads multiplying matrices, as many as the
cores) runs beside it. The demo's budget is work (equal epochs), so load changes how long
it takes, not what each model learns. Writes ``benchmarks/results/demo_load.{json,md}``:
each model's val mIoU, rank and training seconds in both runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _burn(seconds: float) -> None:
    """A CPU-bound competitor: dense matrix products on two threads."""
    import torch

    torch.set_num_threads(2)
    a = torch.randn(1024, 1024)
    end = time.time() + seconds
    while time.time() < end:
        a = torch.tanh(a @ a)


def _demo(out: Path) -> float:
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-m", "edgeseg", "compare", "--demo", "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.time() - t0


def _summary(folder: Path, wall: float | None) -> dict:
    res = json.loads((folder / "results.json").read_text())
    rows = {}
    for name in res["order"]:
        e = res["models"][name]
        rows[name] = {
            "miou": e["metrics"]["miou"],
            "epochs": e["train"]["epochs_done"],
            "train_s": e["train"]["seconds"],
        }
    ranking = sorted(rows, key=lambda n: -rows[n]["miou"])
    return {
        "folder": folder.name,
        "wall_s": wall,
        "budget": res["config"]["budget"],
        "models": rows,
        "ranking": ranking,
    }


def _table(idle: dict, busy: dict, competitor: str) -> str:
    lines = [
        f"`edgeseg compare --demo` ({idle['budget']} per model) on an idle machine and with "
        f"{competitor} competing for the cores. Ranking idle: {', '.join(idle['ranking'])}; "
        f"busy: {', '.join(busy['ranking'])}.",
        "",
        "| model | val mIoU idle | val mIoU busy | difference | epochs | train s idle | "
        "train s busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, a in idle["models"].items():
        b = busy["models"][n]
        diff = b["miou"] - a["miou"]
        lines.append(
            f"| {n} | {a['miou']:.4f} | {b['miou']:.4f} | {diff:+.4f} | "
            f"{a['epochs']}/{b['epochs']} | {a['train_s']:.0f} | {b['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="folder for the two demos (a temporary one)")
    p.add_argument("--idle", default=None, help="a finished idle demo folder to tabulate")
    p.add_argument("--busy", default=None, help="a finished busy demo folder to tabulate")
    p.add_argument(
        "--competitor",
        default="a two-thread matrix-product process",
        help="what competed in the busy run (for the table)",
    )
    p.add_argument("--out", default=str(RESULTS / "demo_load"), help="results stem")
    args = p.parse_args(argv)
    if args.idle and args.busy:
        idle, busy = _summary(Path(args.idle), None), _summary(Path(args.busy), None)
    else:
        work = Path(args.work or tempfile.mkdtemp(prefix="edgeseg-demo-load-"))
        idle = _summary(work / "idle", _demo(work / "idle"))
        burner = mp.get_context("spawn").Process(target=_burn, args=(3600.0,), daemon=True)
        burner.start()
        try:
            busy = _summary(work / "busy", _demo(work / "busy"))
        finally:
            burner.terminate()
    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps({"idle": idle, "busy": busy, "competitor": args.competitor}, indent=2)
    )
    table = _table(idle, busy, args.competitor)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0 if idle["ranking"] == busy["ranking"] else 1


if __name__ == "__main__":
    sys.exit(main())
