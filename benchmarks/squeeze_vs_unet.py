"""Squeeze U-Net versus its U-Net baseline on this CPU, side by side in one run.

Redoes the comparison of Beheshti & Johnsson (CVPRW 2020) with edgeseg's models:
parameters, size on disk, FLOPs (and the paper's own MAC convention), latency and time
per stage. Latency is measured in *paired* rounds: each round times every runner once,
in alternating order, so the machine's drift hits all alike; a ratio is the median of
the per-round ratios. Both networks run as deployed, on two backends: ``eager`` (eval
mode, BatchNorm folded, the faster memory format of each) and ``compile`` (torch.compile
with Inductor and weight freezing, channels_last); glibc is told to keep freed memory
(see edgeseg.deploy.rewrites). The headline ratio compares each network's faster backend.

Usage:
    python benchmarks/squeeze_vs_unet.py [--size 360x480] [--threads 2] [--repeats 15]

Writes ``benchmarks/results/squeeze_vs_unet.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from edgeseg.cpu import cpu_name
from edgeseg.deploy.rewrites import fold_batchnorm
from edgeseg.deploy.tuning import compile_for_inference, malloc_tuned, tune_malloc
from edgeseg.measure.counts import (
    conv_weight_count,
    count_flops,
    paper_macs,
    param_count,
    state_dict_bytes,
)
from edgeseg.measure.timing import (
    measure_latency,
    measure_stage_times,
    num_threads,
    time_interleaved,
    to_memory_format,
)
from edgeseg.models import create_model
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size

#: The paper's claims (CamVid 360x480; timings on an NVIDIA K40 with TensorFlow 1.14).
PAPER = {
    "params_ratio": 12.0,  # "12x fewer parameters"
    "macs_ratio": 3.2,  # "88 billion ... 3.2x reduction compared to the 287 billion"
    "latency_ratio": 1 / 1.17,  # "inference ... 17% faster"
    "contracting_ratio": 0.63,  # Table 6: 3301.68 / 5205 us
    "expanding_ratio": 0.75,  # Table 5: 3440 / 4558 us
}
NAMES = ("squeeze_unet", "unet")
CONTRACTING = ("ds1", "ds2", "ds3", "ds4")
EXPANDING = ("us1", "us2", "us3")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="360x480")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15, help="paired rounds")
    p.add_argument("--no-malloc-tuning", action="store_true")
    p.add_argument("--backends", default="eager,compile", help="comma-separated: eager, compile")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "squeeze_vs_unet"))
    args = p.parse_args(argv)
    h, w = parse_size(args.size)
    if not args.no_malloc_tuning:
        tune_malloc()
    x = torch.randn(1, 3, h, w)
    models = {n: create_model(n, num_classes=args.classes).eval() for n in NAMES}
    t_start = time.time()

    counts = {}
    for n, m in models.items():
        counts[n] = {
            "params": param_count(m),
            "conv_weights": conv_weight_count(m),
            "size_bytes": state_dict_bytes(m),
            "flops": count_flops(m, x),
            "paper_macs": paper_macs(m, x),
        }

    with num_threads(args.threads):
        deployed = {n: fold_batchnorm(m) for n, m in models.items()}
        # Each network in its own faster memory format (a short interleaved trial).
        fmt = {}
        for n, m in deployed.items():
            trial = measure_latency(m, x, warmup=1, repeats=3)
            fmt[n] = min(trial, key=lambda f: statistics.median(trial[f]))
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        runs = {}
        for n in NAMES:
            for b in backends:
                if b == "eager":
                    runs[(n, b)] = to_memory_format(deployed[n], x, fmt[n])
                elif b == "compile":
                    xc = x.contiguous(memory_format=torch.channels_last)
                    cl = models[n].to(memory_format=torch.channels_last)
                    runs[(n, b)] = (compile_for_inference(cl, xc), xc)
                else:
                    p.error(f"--backends: unknown backend {b!r} (eager, compile)")
        times = time_interleaved(runs, warmup=args.warmup, repeats=args.repeats)
        stages = {}
        for n in NAMES:
            # Stage hooks need the eager module; a compiled graph has no stage boundaries.
            eager = to_memory_format(deployed[n], x, fmt[n])
            st, total = measure_stage_times(*eager, repeats=max(3, args.repeats // 2))
            stages[n] = {"total_ms": total, "stages": {s.name: s.ms for s in st}}

    sq, un = "squeeze_unet", "unet"
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {n: min(backends, key=lambda b, n=n: med[(n, b)]) for n in NAMES}
    pair_ratios = [a / b for a, b in zip(times[(sq, best[sq])], times[(un, best[un])], strict=True)]
    per_backend = {
        b: statistics.median([a / c for a, c in zip(times[(sq, b)], times[(un, b)], strict=True)])
        for b in backends
    }

    def path_ms(n: str, names: tuple[str, ...]) -> float:
        return sum(stages[n]["stages"][s] for s in names)

    ours = {
        "params_ratio": counts[un]["params"] / counts[sq]["params"],
        "conv_weights_ratio": counts[un]["conv_weights"] / counts[sq]["conv_weights"],
        "size_ratio": counts[un]["size_bytes"] / counts[sq]["size_bytes"],
        "flops_ratio": counts[un]["flops"] / counts[sq]["flops"],
        "macs_ratio": counts[un]["paper_macs"] / counts[sq]["paper_macs"],
        "latency_ratio": statistics.median(pair_ratios),
        "latency_ratio_of_medians": med[(sq, best[sq])] / med[(un, best[un])],
        "latency_ratio_by_backend": per_backend,
        "contracting_ratio": path_ms(sq, CONTRACTING) / path_ms(un, CONTRACTING),
        "expanding_ratio": path_ms(sq, EXPANDING) / path_ms(un, EXPANDING),
    }
    result = {
        "benchmark": "squeeze_vs_unet",
        "input_size": [h, w],
        "num_classes": args.classes,
        "threads": args.threads,
        "paired_rounds": args.repeats,
        "cpu": cpu_name(),
        "torch_version": torch.__version__,
        "bn_folded": True,
        "malloc_tuned": malloc_tuned(),
        "memory_format": fmt,
        "backends": backends,
        "best_backend": best,
        "counts": counts,
        "latency_ms": {
            n: {
                b: {
                    "median": med[(n, b)],
                    "p90": float(torch.tensor(times[(n, b)]).quantile(0.9)),
                }
                for b in backends
            }
            for n in NAMES
        },
        "latency_runs_ms": {f"{n}/{b}": t for (n, b), t in times.items()},
        "stages_ms": stages,
        "ratios": ours,
        "paper": PAPER,
        "target_latency_ratio": 0.40,
        "wall_seconds": time.time() - t_start,
    }
    md = render_markdown(result)
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def render_markdown(r: dict) -> str:
    """The result as a Markdown table, with the paper's claims beside ours."""
    o, p, c = r["ratios"], r["paper"], r["counts"]
    sq, un = c["squeeze_unet"], c["unet"]
    lat = r["latency_ms"]
    best = r["best_backend"]
    h, w = r["input_size"]
    lines = [
        f"Squeeze U-Net vs U-Net at {h}x{w}, K={r['num_classes']}, {r['threads']} threads, "
        f"{r['paired_rounds']} paired rounds on {r['cpu']} (torch {r['torch_version']}; "
        f"eager: BN folded, formats {r['memory_format']['squeeze_unet']} / "
        f"{r['memory_format']['unet']}; compile: Inductor + freezing, channels_last).",
        "",
        "| quantity | Squeeze U-Net | U-Net | U-Net / Squeeze | paper |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| parameters | {sq['params']:,} | {un['params']:,} | {o['params_ratio']:.2f}x | "
        f"{p['params_ratio']:.0f}x |",
        f"| size on disk (MB) | {sq['size_bytes'] / 1e6:.1f} | {un['size_bytes'] / 1e6:.1f} | "
        f"{o['size_ratio']:.2f}x | 12.08x |",
        f"| FLOPs (flop_counter, G) | {sq['flops'] / 1e9:.1f} | {un['flops'] / 1e9:.1f} | "
        f"{o['flops_ratio']:.2f}x | |",
        f"| paper's MACs (2 x W x out px, G) | {sq['paper_macs'] / 1e9:.1f} | "
        f"{un['paper_macs'] / 1e9:.1f} | {o['macs_ratio']:.2f}x | "
        f"{p['macs_ratio']}x (88 / 287 G) |",
    ]
    for b in r["backends"]:
        lines.append(
            f"| latency median, {b} (ms) | {lat['squeeze_unet'][b]['median']:.1f} | "
            f"{lat['unet'][b]['median']:.1f} | "
            f"{1 / o['latency_ratio_by_backend'][b]:.2f}x | |"
        )
    bsq, bun = lat["squeeze_unet"][best["squeeze_unet"]], lat["unet"][best["unet"]]
    lines += [
        f"| latency median, best backend (ms) | {bsq['median']:.1f} ({best['squeeze_unet']})"
        f" | {bun['median']:.1f} ({best['unet']}) | "
        f"{1 / o['latency_ratio']:.2f}x | 1.17x (K40 GPU) |",
        "",
        "| ratio Squeeze / U-Net | measured | paper | target |",
        "| --- | ---: | ---: | ---: |",
        f"| latency, best backends (median of paired ratios) | {o['latency_ratio']:.3f} | "
        f"{p['latency_ratio']:.3f} | <= {r['target_latency_ratio']:.2f} |",
    ]
    lines += [
        f"| latency, {b} both | {v:.3f} | | |" for b, v in o["latency_ratio_by_backend"].items()
    ]
    lines += [
        f"| contracting path DS1-DS4 time | {o['contracting_ratio']:.3f} | "
        f"{p['contracting_ratio']:.2f} | |",
        f"| expanding path US1-US3 time | {o['expanding_ratio']:.3f} | "
        f"{p['expanding_ratio']:.2f} | |",
        "",
        "| stage (eager) | Squeeze U-Net ms | U-Net ms |",
        "| --- | ---: | ---: |",
    ]
    st_sq = r["stages_ms"]["squeeze_unet"]["stages"]
    st_un = r["stages_ms"]["unet"]["stages"]
    lines += [f"| {s} | {st_sq[s]:.1f} | {st_un[s]:.1f} |" for s in st_sq]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
