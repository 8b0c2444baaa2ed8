"""Past one machine: batch prediction and a comparison on Ray, against one process here.

    python benchmarks/scale.py --data $EDGESEG_DATA [--images 2000] [--model segfast_camvid]
        [--work /tmp/scale] [--skip-compare]

1. **Batch prediction**: a folder of ``--images`` CamVid val images (symbolic links with
   distinct names, in the work folder) segmented by ``edgeseg-run predict`` with a shipped
   network's ONNX file: one process with 2 threads, then ``--ray local`` with 2 actors x 1
   thread and 1 actor x 2 threads. The 2-actor run is killed a third of the way in and run
   again: the files written before the kill must keep their modification times, and every
   label map must equal the one-process run's. Images/s are whole-job wall figures
   (process start, Ray start and all reading and writing included).
2. **Comparison**: ``edgeseg compare --demo``'s three models and data (an equal-work
   budget: 60 epochs each), ``threads=1``, on a one-node and a two-node Ray cluster of one
   CPU per node started on loopback: the wall time of each and the speed-up; each model's
   epochs and val mIoU must be equal in both.

Writes ``benchmarks/results/scale.{json,md}`` naming the CPU. Run it with nothing else on
the machine: every figure is a wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeseg.cpu import cpu_name  # noqa: E402
from edgeseg.utils import atomic_write_json, atomic_write_text  # noqa: E402
from tests.raycluster import ENV, LocalCluster  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _folder(data: Path, work: Path, n: int) -> Path:
    """``work/images``: ``n`` links to CamVid val images, each name once."""
    src = sorted((data / "val").glob("*.png"))
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        link = folder / f"{i:05d}_{src[i % len(src)].name}"
        if not link.exists():
            link.symlink_to(src[i % len(src)].resolve())
    return folder


def _run(args: list[str], out: Path) -> float:
    """Wall seconds of one ``edgeseg-run predict`` into ``out`` (label maps only)."""
    t0 = time.perf_counter()
    subprocess.run(
        ["edgeseg-run", "predict", *args, "--out", str(out), "--no-overlays"],
        check=True,
        capture_output=True,
        env=ENV,
    )
    return time.perf_counter() - t0


def _killed_then_resumed(args: list[str], out: Path, n: int) -> dict:
    """Kill a Ray prediction a third of the way in, run it again; what the second run did
    and whether the first run's files were left alone."""
    cmd = ["edgeseg-run", "predict", *args, "--out", str(out), "--no-overlays"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    while proc.poll() is None and len(list((out / "labels").glob("*.png"))) < n // 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "labels").glob("*.png")}
    subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    after = json.loads((out / "predict_summary.json").read_text())
    kept = all((out / "labels" / k).stat().st_mtime_ns == v for k, v in before.items())
    return {
        "done_before_kill": len(before),
        "skipped_on_resume": after["skipped"],
        "written_on_resume": after["written"],
        "finished_files_untouched": kept,
    }


def _equal(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in (a / "labels").glob("*.png"))
    if names != sorted(p.name for p in (b / "labels").glob("*.png")):
        return False
    return all(
        (np.asarray(Image.open(a / "labels" / x)) == np.asarray(Image.open(b / "labels" / x))).all()
        for x in names
    )


def predict_part(data: Path, work: Path, n: int, model: str) -> dict:
    """Part 1: one process against Ray actor pools on the same folder."""
    from edgeseg.workflows.export import export_checkpoint

    onnx = work / f"{model}.onnx"
    if not onnx.is_file():
        export_checkpoint(model, onnx)
    images = _folder(data, work, n)
    rows = []
    for label, extra in (
        ("one process, 2 threads", ["--threads", "2"]),
        ("Ray, 2 actors x 1 thread", ["--ray", "local", "--actors", "2", "--threads", "1"]),
        ("Ray, 1 actor x 2 threads", ["--ray", "local", "--actors", "1", "--threads", "2"]),
    ):
        out = work / f"out_{len(rows)}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing to skip
        wall = _run([str(onnx), str(images), *extra], out)
        summary = out / "predict_summary.json"
        med = json.loads(summary.read_text())["latency_ms"]["median"] if summary.is_file() else None
        rows.append(
            {
                "mode": label,
                "wall_s": round(wall, 1),
                "images_per_s": round(n / wall, 1),
                "network_median_ms": med,
                "out": str(out),
            }
        )
        print(f"{label}: {wall:.1f} s, {n / wall:.1f} images/s", flush=True)
    same = all(_equal(Path(rows[0]["out"]), Path(r["out"])) for r in rows[1:])
    shutil.rmtree(work / "out_resumed", ignore_errors=True)
    resume = _killed_then_resumed(
        [str(onnx), str(images), "--ray", "local", "--actors", "2", "--threads", "1"],
        work / "out_resumed",
        n,
    )
    resume["labels_equal_one_process"] = _equal(Path(rows[0]["out"]), work / "out_resumed")
    return {"images": n, "model": model, "rows": rows, "labels_equal": same, "resume": resume}


def _compare_once(work: Path, name: str, address: str | None) -> dict:
    """The demo comparison into ``work/name`` (on ``address`` when given); wall seconds."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "edgeseg",
        "compare",
        "--demo",
        "--out",
        str(out),
        "threads=1",
        "--json",
    ]
    if address:
        cmd += ["--ray", address]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    res = json.loads(r.stdout)
    models = {
        m: {"epochs": e["train"]["epochs_done"], "miou": e["metrics"]["miou"]}
        for m, e in res["models"].items()
    }
    return {"run": name, "wall_s": round(wall, 1), "models": models}


def compare_part(work: Path) -> dict:
    """Part 2: the demo comparison on one node and on two nodes of one CPU each."""
    runs = []
    for nodes in (1, 2):
        cluster = LocalCluster(cpus_per_node=1, nodes=nodes)
        try:
            runs.append(_compare_once(work, f"compare_{nodes}node", cluster.address))
        finally:
            cluster.stop()
        print(f"compare on {nodes} node(s): {runs[-1]['wall_s']} s", flush=True)
    same = runs[0]["models"] == runs[1]["models"]
    return {
        "runs": runs,
        "speedup": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
        "same_models_epochs_miou": same,
    }


def render(res: dict) -> str:
    """The markdown table of both parts."""
    p = res["predict"]
    lines = [
        f"# Scaling out with Ray ({res['cpu']})",
        "",
        f"## Batch prediction: {p['images']} CamVid images (480x360), `{p['model']}` ONNX",
        "",
        "Whole-job wall time (start-up, reading, writing label PNGs included), one run each.",
        "",
        "| mode | wall s | images/s | network median ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in p["rows"]:
        med = "-" if r["network_median_ms"] is None else f"{r['network_median_ms']:.1f}"
        lines.append(f"| {r['mode']} | {r['wall_s']} | {r['images_per_s']} | {med} |")
    rs = p["resume"]
    lines += [
        "",
        f"Labels equal to the one-process run's: {p['labels_equal']}. Killed (SIGKILL) after "
        f"{rs['done_before_kill']} images and run again: {rs['skipped_on_resume']} skipped, "
        f"{rs['written_on_resume']} written, finished files untouched: "
        f"{rs['finished_files_untouched']}, labels equal: {rs['labels_equal_one_process']}.",
    ]
    if "compare" in res:
        c = res["compare"]
        lines += [
            "",
            "## Comparison: `edgeseg compare --demo` (3 models, 60 epochs each), threads=1",
            "",
            "| cluster | wall s |",
            "| --- | ---: |",
        ]
        lines += [
            f"| {r['run'].split('_')[1].replace('node', ' node(s) x 1 CPU')} | {r['wall_s']} |"
            for r in c["runs"]
        ]
        lines += [
            "",
            f"Speed-up of two nodes: {c['speedup']}x; the same models, epochs and "
            f"val mIoU on both: {c['same_models_epochs_miou']}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="CamVid root (val/*.png)")
    ap.add_argument("--images", type=int, default=2000, help="images of the folder (2000)")
    ap.add_argument("--model", default="segfast_camvid", help="shipped weights to export")
    ap.add_argument("--work", default="/tmp/edgeseg-scale", help="work folder (outside repo)")
    ap.add_argument("--skip-compare", action="store_true", help="batch prediction only")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res = {
        "cpu": cpu_name(),
        "predict": predict_part(Path(args.data), work, args.images, args.model),
    }
    if not args.skip_compare:
        res["compare"] = compare_part(work)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "scale.json", res)
    atomic_write_text(RESULTS / "scale.md", render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
