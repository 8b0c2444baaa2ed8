"""Peak resident memory of segmenting one large photo, per entry point.

    python benchmarks/memory.py [--weights ddrnet_camvid] [--megapixels 48]

Writes a synthetic photo of the given size (8000x6000 for 48 MP, 4:3) as a JPEG, exports
the shipped weights to ONNX once, then runs each entry point in a fresh process (the
PyTorch ``edgeseg.Segmenter``, ``edgeseg predict`` with labels and overlays, the torch-free
``edgeseg_runtime.Segmenter`` and ``edgeseg-run predict``) and reads its peak resident
set size. Prints a table and writes ``benchmarks/results/memory.{json,md}`` naming the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from edgeseg_runtime.processing import max_work_pixels
from PIL import Image

from edgeseg.cpu import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_mb(cmd: list[str]) -> float:
    """Peak resident MB of ``cmd``, the only child of a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE, *cmd], check=True, capture_output=True)
    return int(out.stdout.decode().split()[-1]) / 1024


def photo(path: Path, megapixels: float) -> tuple[int, int]:
    """A smooth synthetic photo of about ``megapixels`` (4:3) saved as JPEG; its (H, W)."""
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = h * 4 // 3
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x // 31) % 256, (y // 17) % 256, ((x + y) // 23) % 256], -1)
    Image.fromarray(img.astype(np.uint8)).save(path, quality=85)
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="ddrnet_camvid", help="shipped weights to run")
    ap.add_argument("--megapixels", type=float, default=48.0, help="size of the photo")
    args = ap.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        h, w = photo(t / "photo.jpg", args.megapixels)
        subprocess.run(
            [py, "-m", "edgeseg", "export", args.weights, "--out", str(t / "m.onnx")],
            check=True,
            capture_output=True,
        )
        runs = {
            "edgeseg.Segmenter": [
                py,
                "-c",
                f"import edgeseg; edgeseg.Segmenter({args.weights!r})({str(t / 'photo.jpg')!r})",
            ],
            "edgeseg predict (labels + overlay)": [
                py,
                "-m",
                "edgeseg",
                "predict",
                "--model",
                args.weights,
                str(t / "photo.jpg"),
                "--out",
                str(t / "p"),
            ],
            "edgeseg_runtime.Segmenter (ort)": [
                py,
                "-c",
                "from edgeseg_runtime import "
                f"Segmenter; Segmenter({str(t / 'm.onnx')!r})"
                f"({str(t / 'photo.jpg')!r})",
            ],
            "edgeseg-run predict (labels + overlay)": [
                py,
                "-m",
                "edgeseg_runtime",
                "predict",
                str(t / "m.onnx"),
                str(t / "photo.jpg"),
                "--out",
                str(t / "q"),
            ],
        }
        rows = [{"entry point": k, "peak_mb": round(peak_mb(v), 1)} for k, v in runs.items()]
    result = {
        "cpu": cpu_name(),
        "weights": args.weights,
        "photo_hw": [h, w],
        "work_pixels": max_work_pixels(),
        "rows": rows,
    }
    lines = [
        f"# Peak memory of one {h}x{w} photo ({args.weights}, {cpu_name()})",
        "",
        f"Images above {max_work_pixels():,} pixels run the network at a downscaled copy.",
        "",
        "| entry point | peak resident MB |",
        "| --- | ---: |",
        *(f"| {r['entry point']} | {r['peak_mb']:.0f} |" for r in rows),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
