"""OpenVINO int8 from edgeseg's own QDQ file against NNCF's post-training quantizer.

    python benchmarks/nncf_int8.py [--model erfnet_camvid] --data $EDGESEG_DATA

One ``edgeseg bench`` run, so the backends are measured side by side with its protocol
(fresh processes, rounds interleaved) and scored on the whole val split: ``openvino``
(fp32), ``openvino-int8`` (edgeseg's QDQ file, ONNX Runtime's quantizer on the int8 graph)
and ``nncf-int8`` (NNCF's ``quantize``, ONNX backend, default preset, from the same fp32
export), both int8 files calibrated on the same training images. Writes
``benchmarks/results/nncf_int8.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BACKENDS = ["ort", "openvino", "openvino-int8", "nncf-int8"]


def main(argv: list[str] | None = None) -> int:
    from edgeseg.measure.bench import bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="erfnet_camvid", help="checkpoint or shipped weights")
    p.add_argument("--data", required=True, help="data root (calibration and val)")
    p.add_argument("--size", default="360x480")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "nncf_int8"))
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    res = bench(
        args.model,
        size=(h, w),
        threads=args.threads,
        backends=BACKENDS,
        iterations=5,
        repeats=2,
        data=args.data,
        calib_data=args.data,
    )
    rows = {
        b: {
            "latency_ms": r["latency_ms"]["median"],
            "miou": r.get("miou"),
            "size_bytes": r.get("size_bytes"),
        }
        for b, r in res["backends"].items()
    }
    lines = [
        f"{args.model} at {h}x{w}, {args.threads} threads, {res['cpu']}; fresh "
        "processes, median ms; mIoU on the whole val split.",
        "",
        "| backend | file | ms | mIoU | MB |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    files = {
        "ort": "fp32",
        "openvino": "fp32",
        "openvino-int8": "edgeseg QDQ int8",
        "nncf-int8": "NNCF int8",
    }
    for b, r in rows.items():
        mb = f"{r['size_bytes'] / 1e6:.2f}" if r["size_bytes"] else "-"
        lines.append(f"| {b} | {files[b]} | {r['latency_ms']:.1f} | {r['miou']:.4f} | {mb} |")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps(
            {"model": args.model, "cpu": res["cpu"], "rows": rows, "errors": res.get("errors")},
            indent=2,
        )
    )
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
