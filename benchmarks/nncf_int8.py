"""OpenVINO int8 from edgeseg's own QDQ file against NNCF's post-training quantizer.

    python benchmarks/nncf_int8.py [--model erfnet_camvid] --data $EDGESEG_DATA

Both start from the same fp32 ONNX export and calibrate on the same training images
(edgeseg's 32 by default); NNCF's ``quantize`` (ONNX backend, default preset) writes its
own QDQ file. Each file then runs in OpenVINO in fresh processes, rounds interleaved
(``edgeseg.measure.bench``'s protocol), and is scored on the whole val split. Writes
``benchmarks/results/nncf_int8.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def nncf_quantize(fp32: Path, out: Path, images: list) -> None:
    """NNCF post-training quantization of an ONNX file (its ONNX backend)."""
    import nncf
    import onnx

    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    data = nncf.Dataset([im[None].numpy() for im in images], lambda x: {name: x})
    q = nncf.quantize(model, data, subset_size=len(images))
    if not q.metadata_props:  # edgeseg's metadata (classes, normalisation) carried over
        q.metadata_props.extend(model.metadata_props)
    onnx.save(q, str(out))


def main(argv: list[str] | None = None) -> int:
    from edgeseg.defaults import CALIB_IMAGES
    from edgeseg.deploy.quantize import calibration_images
    from edgeseg.engine.checkpoint import load_model
    from edgeseg.measure.bench import bench
    from edgeseg.workflows.export import export_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="erfnet_camvid", help="checkpoint or shipped weights")
    p.add_argument("--data", required=True, help="data root (calibration and val)")
    p.add_argument("--size", default="360x480")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "nncf_int8"))
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    _, ckpt = load_model(args.model)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_checkpoint(args.model, fp32, input_size=(h, w))
        images = calibration_images(ckpt, args.data, "train", CALIB_IMAGES, (h, w))
        nncf_file = Path(tmp) / "nncf.int8.onnx"
        nncf_quantize(fp32, nncf_file, images)
        # edgeseg's own int8 file: what `bench` runs as openvino-int8.
        res = bench(args.model, size=(h, w), threads=args.threads,
                    backends=["ort", "openvino", "openvino-int8"], iterations=5, repeats=2,
                    data=args.data, calib_data=args.data)  # fmt: skip
        for b in ("openvino", "openvino-int8"):
            r = res["backends"][b]
            rows[f"{b} (edgeseg QDQ)" if b.endswith("int8") else b] = {
                "latency_ms": r["latency_ms"]["median"], "miou": r.get("miou")}  # fmt: skip
        # NNCF's file through the same protocol: benched as an ONNX file on openvino.
        nres = bench(str(nncf_file), size=(h, w), threads=args.threads,
                     backends=["ort", "openvino"], iterations=5, repeats=2,
                     data=args.data)  # fmt: skip
    rows["openvino-int8 (NNCF)"] = {
        "latency_ms": nres["backends"]["openvino"]["latency_ms"]["median"],
        "miou": nres["backends"]["openvino"].get("miou"),
    }
    lines = [f"{args.model} at {h}x{w}, {args.threads} threads, {res['cpu']}; OpenVINO, "
             "fresh processes, median ms; mIoU on the whole val split.", "",
             "| file | ms | mIoU |", "| --- | ---: | ---: |"]  # fmt: skip
    for k, r in rows.items():
        lines.append(f"| {k} | {r['latency_ms']:.1f} | {r['miou']:.4f} |")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "cpu": res["cpu"],
                                                    "rows": rows}, indent=2))  # fmt: skip
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
