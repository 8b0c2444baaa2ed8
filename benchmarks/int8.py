"""int8 that keeps its accuracy: fp32, plain int8 and mixed precision per model.

    python benchmarks/int8.py --data $EDGESEG_DATA \\
        [--models ddrnet_camvid,segfast_camvid,RUN_DIR ...] [--budget 0.01]

For each model, two ``edgeseg bench`` runs back to back with the same backends (fp32
``ort`` and ``openvino``; ``ort-int8``, ``openvino-int8``, ``nncf-int8``), scored on the
whole val split: the plain int8 files, then the mixed-precision ones
(:mod:`edgeseg.deploy.mixed`: when int8 loses more than ``--budget``, the most
sensitive modules stay fp32). Writes ``benchmarks/results/int8.{json,md}`` with each
model's rows, the modules kept in fp32, the sensitivity table, and which backend the
bench rule deploys (the fastest within the budget, fp32 included). Run it with nothing
else on the cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
FP32 = ["eager", "ort", "openvino"]
INT8 = ["ort-int8", "openvino-int8", "nncf-int8"]
MODELS = "ddrnet_camvid,erfnet_camvid,segfast_camvid,squeeze_unet_camvid"


def _run(model: str, data: str, budget: float, mixed: bool, threads: int) -> dict[str, Any]:
    from edgeseg.measure.bench import bench

    backends = FP32 + INT8 if not mixed else ["eager", *INT8]
    return bench(
        model,
        size=(360, 480),
        threads=threads,
        backends=backends,
        iterations=10,
        repeats=3,
        data=data,
        calib_data=data,
        budget_miou=budget,
        mixed_precision=mixed,
    )


def _rows(model: str, plain: dict, mixed: dict, budget: float) -> dict[str, Any]:
    """One model's figures: every backend of both runs, and what each run would deploy."""
    from edgeseg.measure.bench import fastest_within_budget

    rows = {b: _row(r) for b, r in plain["backends"].items()}
    rows.update({f"{b} mixed": _row(r) for b, r in mixed["backends"].items() if b in INT8})
    found = next((q["mixed"] for q in mixed["quantization"].values() if q.get("mixed")), {})
    table = {b: {"latency_ms": {"median": r["ms"]}, "miou": r["miou"]} for b, r in rows.items()}
    return {
        "model": model,
        "rows": rows,
        "kept_fp32": found.get("kept_fp32", []),
        "sensitivity": found.get("sensitivity"),
        "deploy_plain": fastest_within_budget(plain["backends"], budget),
        # nothing kept in fp32: the mixed files are the plain ones (only timing noise differs)
        "deploy_mixed": fastest_within_budget(table, budget)
        if found.get("kept_fp32")
        else fastest_within_budget(plain["backends"], budget),
        "errors": {**plain.get("errors", {}), **mixed.get("errors", {})},
    }


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"ms": r["latency_ms"]["median"], "miou": r.get("miou")}


def _markdown(out: list[dict], cpu: str, budget: float) -> str:
    from edgeseg.deploy.mixed import Sensitivity

    lines = [
        f"360x480, 2 threads, {cpu}; fresh processes, median ms; mIoU on the whole "
        f"CamVid val split; budget {budget:.3f} mIoU. Plain and mixed int8 come from two "
        "bench runs back to back: when no module is kept in fp32 the files are the same, "
        "and their latencies differ by the runs' noise.",
        "",
    ]
    for m in out:
        lines += [f"## {m['model']}", "", "| backend | ms | mIoU |", "| --- | ---: | ---: |"]
        for b, r in m["rows"].items():
            miou = f"{r['miou']:.4f}" if r["miou"] is not None else "-"
            lines.append(f"| {b} | {r['ms']:.1f} | {miou} |")
        lines += [
            "",
            f"kept in fp32: {', '.join(m['kept_fp32']) or 'none'}; deployed "
            f"without mixed precision: {m['deploy_plain']}, with it: "
            f"{m['deploy_mixed']}",
            "",
        ]
        if m["sensitivity"]:
            table = Sensitivity.from_dict(m["sensitivity"]).table()
            lines += ["```text", table, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=MODELS, help="comma-separated checkpoints or names")
    p.add_argument("--data", required=True, help="CamVid root (calibration and val)")
    p.add_argument("--budget", type=float, default=0.01, help="mIoU int8 may lose")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "int8"))
    args = p.parse_args(argv)
    out, cpu = [], ""
    for model in args.models.split(","):
        plain = _run(model, args.data, args.budget, False, args.threads)
        mixed = _run(model, args.data, args.budget, True, args.threads)
        out.append(_rows(model, plain, mixed, args.budget))
        cpu = plain["cpu"]
        path = Path(args.out)  # written after each model: a long run keeps what it measured
        path.with_suffix(".json").write_text(json.dumps({"cpu": cpu, "models": out}, indent=2))
        path.with_suffix(".md").write_text(_markdown(out, cpu, args.budget))
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
