"""Every zoo model on this CPU at one size, next to the figures its paper reports.

For each registered model: parameters, FLOPs (torch.utils.flop_counter), size on disk,
median and p90 latency with a fixed thread count in the faster memory format (eval mode,
BatchNorm folded, as deployed), and peak memory, all from :func:`edgeseg.measure.profiling.profile`.
The paper column quotes what each paper reports (its own size, input, hardware and
conventions: they are context, not comparable numbers).

With ``--reference-segfast PATH`` (a checkout of the SegFast authors' repository,
github.com/DVLP-CMATERJU/SegFast) and/or ``--reference-erfnet PATH`` (a checkout of
github.com/Eromera/erfnet_pytorch), the same networks from the authors' code are timed
side by side with edgeseg's, interleaved in the same rounds, both eager fp32 in their
faster memory format, with random weights (speed does not depend on their values). The
reference code is imported from that path at run time; nothing of it is in edgeseg.
Without the paths that comparison is skipped.

Usage:
    python benchmarks/zoo.py [--size 360x480] [--threads 2] [--repeats 10]
        [--models a,b] [--reference-segfast PATH] [--reference-erfnet PATH]

Writes ``benchmarks/results/zoo.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.cpu import cpu_name
from edgeseg.deploy.rewrites import fold_batchnorm
from edgeseg.deploy.tuning import malloc_tuned, tune_malloc
from edgeseg.measure.counts import param_count
from edgeseg.measure.profiling import profile
from edgeseg.measure.timing import num_threads, time_interleaved, to_memory_format
from edgeseg.models import create_model, list_models
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size

#: What each paper reports, quoted (their sizes, datasets and hardware; context only).
PAPER: dict[str, str] = {
    "squeeze_unet": "2.59 M params; '88 B MACs' at 360x480 (its convention); CamVid 5-cls IoU .616",
    "unet": "31.0 M params; '287 B MACs' at 360x480; CamVid 5-class avg IoU .670",
    "squeeze_unet_dws": "930,683 conv weights (derived); 0.0119 s at 64x64 (blog, other base net)",
    "squeeze_encdec": "0.0102 s at 64x64 (blog, other base net)",
    "l3unet": "279,084 params at K=4",
    "edgesegnet": "0.0077 s at 64x64 (blog); no official code",
    "segfast": "603,288 params (unreleased variant); CamVid mIoU .500 (224x224); 0.389 s (8 cores)",
    "segfast_basic": "2,965,976 params; CamVid mIoU .443 at 224x224",
    "erfnet": "2.07 M params (K=20); 27.705 GFLOPs at 512x1024 (thesis); Cityscapes 70.45",
    "essnet": "ESSNet-D 5.773 GFLOPs at 512x1024; Cityscapes 68.39 (gradual grouping)",
    "essnet_a": "ESSNetA-DG2S Cityscapes 70.62",
    "essnet_b": "ESSNetB-D 10.597 GFLOPs at 512x1024; Cityscapes 68.55",
    "essnet_ppm": "thesis section 4.2 (pyramid pooling)",
    "wspdnet": "0.67-0.72 M params; Cityscapes 69.72; 51 FPS on a GTX 1080Ti",
    "fcn_resnet50": "23,534,915 params at K=13; 170 MB -> 18 MB on disk after sparsify + int8",
}


def _load_module(path: Path, name: str) -> Any:
    """Import one Python file of a reference checkout by path."""
    if not path.is_file():
        raise SystemExit(f"reference file not found: {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_models(args: argparse.Namespace, k: int) -> dict[str, nn.Module]:
    """edgeseg name -> the authors' implementation of the same network (eval mode)."""
    refs: dict[str, nn.Module] = {}
    if args.reference_segfast:
        root = Path(args.reference_segfast)
        sf = _load_module(root / "models" / "segfast.py", "ref_segfast")
        sfb = _load_module(root / "models" / "segfast_basic.py", "ref_segfast_basic")
        refs["segfast"] = sf.SegFast(64, k)
        refs["segfast_basic"] = sfb.SegFast_Basic(64, k)
    if args.reference_erfnet:
        root = Path(args.reference_erfnet)
        ef = _load_module(root / "train" / "erfnet.py", "ref_erfnet")
        refs["erfnet"] = ef.Net(k)
    return {n: m.eval() for n, m in refs.items()}


def compare_reference(
    refs: dict[str, nn.Module], x: torch.Tensor, k: int, warmup: int, repeats: int
) -> list[dict[str, Any]]:
    """edgeseg's network and the authors' timed in the same interleaved rounds."""
    rows = []
    for name, ref in refs.items():
        ours = create_model(name, num_classes=k).eval()
        runs: dict[tuple[str, str], Any] = {}
        # "deployed": edgeseg's inference path (BatchNorm folded), what `profile` times.
        deployed = fold_batchnorm(ours)
        for who, m in (("edgeseg", ours), ("reference", ref), ("deployed", deployed)):
            for fmt in ("contiguous", "channels_last"):
                runs[(who, fmt)] = to_memory_format(m, x, fmt)
        times = time_interleaved(runs, warmup=warmup, repeats=repeats)
        med = {key: statistics.median(v) for key, v in times.items()}
        best = {
            who: min(("contiguous", "channels_last"), key=lambda f, w=who: med[(w, f)])
            for who in ("edgeseg", "reference", "deployed")
        }
        ratios = [
            r / o
            for r, o in zip(
                times[("reference", best["reference"])],
                times[("edgeseg", best["edgeseg"])],
                strict=True,
            )
        ]
        rows.append(
            {
                "model": name,
                "edgeseg_params": param_count(ours),
                "reference_params": param_count(ref),
                "edgeseg_ms": med[("edgeseg", best["edgeseg"])],
                "edgeseg_format": best["edgeseg"],
                "reference_ms": med[("reference", best["reference"])],
                "reference_format": best["reference"],
                "speedup": statistics.median(ratios),  # reference time / edgeseg time
                "deployed_ms": med[("deployed", best["deployed"])],
                "deployed_speedup": statistics.median(
                    r / d
                    for r, d in zip(
                        times[("reference", best["reference"])],
                        times[("deployed", best["deployed"])],
                        strict=True,
                    )
                ),
                "by_format_ms": {f"{w}/{f}": v for (w, f), v in med.items()},
            }
        )
        print(
            f"  {name}: edgeseg {rows[-1]['edgeseg_ms']:.1f} ms, authors' code "
            f"{rows[-1]['reference_ms']:.1f} ms (x{rows[-1]['speedup']:.2f})",
            flush=True,
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The README tables."""
    h, w = result["input_size"]
    lines = [
        f"Zoo at {h}x{w}, K={result['num_classes']}, {result['threads']} threads, "
        f"{result['cpu']}, torch {result['torch_version']} (eval, BatchNorm folded, faster "
        f"memory format; median of {result['repeats']} interleaved runs).",
        "",
        "| model | params | GFLOPs | size MB | latency ms (p90) | format | peak MB "
        "| paper reports |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in result["models"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['flops'] / 1e9:.1f} | "
            f"{r['size_bytes'] / 1e6:.1f} | {lat['median']:.0f} ({lat['p90']:.0f}) | "
            f"{r['memory_format']} | {r['peak_memory_bytes'] / 1e6:.0f} | "
            f"{PAPER.get(r['model'], '')} |"
        )
    if result["reference"]:
        lines += [
            "",
            "Against the authors' released PyTorch code, same network, same input, timed in "
            "the same interleaved rounds (eager fp32, BatchNorm unfolded in both, each in its "
            "faster memory format), and edgeseg as deployed (BatchNorm folded):",
            "",
            "| model | edgeseg ms | authors' code ms | authors / edgeseg | edgeseg deployed ms "
            "| authors / deployed | params (edgeseg / authors) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in result["reference"]:
            lines.append(
                f"| {r['model']} | {r['edgeseg_ms']:.0f} ({r['edgeseg_format']}) | "
                f"{r['reference_ms']:.0f} ({r['reference_format']}) | {r['speedup']:.2f}x | "
                f"{r['deployed_ms']:.0f} | {r['deployed_speedup']:.2f}x | "
                f"{r['edgeseg_params']:,} / {r['reference_params']:,} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="360x480")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument(
        "--models", default=None, help="comma-separated (default: every model; '' for none)"
    )
    p.add_argument("--reference-segfast", default=None, help="checkout of DVLP-CMATERJU/SegFast")
    p.add_argument("--reference-erfnet", default=None, help="checkout of Eromera/erfnet_pytorch")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "zoo"))
    args = p.parse_args(argv)
    h, w = parse_size(args.size)
    names = list_models() if args.models is None else [n for n in args.models.split(",") if n]
    tune_malloc()
    t0 = time.time()
    rows = []
    for n in names:
        r = profile(
            n,
            (h, w),
            num_classes=args.classes,
            threads=args.threads,
            warmup=args.warmup,
            repeats=args.repeats,
            stage_repeats=3,
        ).to_dict()
        r["paper"] = PAPER.get(n, "")
        rows.append(r)
        print(f"  {n}: {r['latency_ms']['median']:.1f} ms ({r['memory_format']})", flush=True)
    reference = []
    refs = reference_models(args, args.classes)
    if refs:
        with num_threads(args.threads):
            reference = compare_reference(
                refs, torch.randn(1, 3, h, w), args.classes, args.warmup, args.repeats
            )
    else:
        print("  (no --reference-* paths: the comparison with the authors' code is skipped)")
    result = {
        "input_size": [h, w],
        "num_classes": args.classes,
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu": cpu_name(),
        "torch_version": torch.__version__,
        "malloc_tuned": malloc_tuned(),
        "seconds": time.time() - t0,
        "models": rows,
        "reference": reference,
    }
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), result)
    md = markdown(result)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
