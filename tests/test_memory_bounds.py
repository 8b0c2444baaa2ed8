"""A phone photo never takes gigabytes: images larger than the working size are segmented
at a downscaled copy in both Segmenters, predict and edgeseg-run (peak resident memory of
each process measured, not time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.processing import as_rgb, check_size, upsample_labels, work_copy
from PIL import Image

GB = 2**30


def test_work_copy_bounds_pixels_and_keeps_small_images() -> None:
    small = np.zeros((360, 480, 3), np.uint8)
    assert work_copy(small) is small
    big = np.zeros((3000, 4000, 3), np.uint8)
    out = work_copy(big, limit=1_000_000)
    assert (
        out.shape[0] * out.shape[1] <= 1_000_000 and abs(out.shape[1] / out.shape[0] - 4 / 3) < 0.01
    )
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert upsample_labels(labels, (6, 8))[::2, ::2].tolist() == labels.tolist()


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0, 3)])
def test_empty_arrays_are_one_line(shape) -> None:
    with pytest.raises(EdgesegError, match="empty array"):
        as_rgb(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_16_bit_and_float_pil_images_are_refused_not_clipped(mode: str) -> None:
    with pytest.raises(EdgesegError, match=f"PIL mode {mode} "):
        as_rgb(Image.new(mode, (8, 8)))


@pytest.mark.parametrize("size", [(0, 0), (-4, 5), ("a", "b"), (8193, 8), (1.5, 2), (3,), None])
def test_input_sizes_are_checked(size) -> None:
    with pytest.raises(EdgesegError, match=r"expected \(H, W\) whole numbers in 1\.\.8192"):
        check_size(size if size is not None else 5)
    assert check_size((np.int64(3), 4)) == (3, 4)


def test_both_segmenters_refuse_bad_sizes_and_threads_in_one_line() -> None:
    from edgeseg import Segmenter

    with pytest.raises(EdgesegError, match="input_size"):
        Segmenter("segfast_camvid", input_size=(0, 0))
    with pytest.raises(EdgesegError, match="threads"):
        Segmenter("segfast_camvid", threads=-1)


def _peak_rss(code: list[str]) -> int:
    """Peak resident bytes of ``code`` run as the only child of a fresh process (the
    children's maximum is cumulative, so each command gets its own parent)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *code], check=True, capture_output=True)
    return int(out.stdout.decode().split()[-1]) * 1024  # ru_maxrss is in kB on Linux


@pytest.mark.slow
def test_48_megapixel_photo_stays_under_2_gb(tmp_path: Path) -> None:
    y, x = np.mgrid[0:6000, 0:8000]
    img = np.stack([(x // 31) % 256, (y // 17) % 256, ((x + y) // 23) % 256], -1)
    photo = tmp_path / "phone.jpg"
    Image.fromarray(img.astype(np.uint8)).save(photo, quality=85)
    del img, x, y
    onnx = tmp_path / "m.onnx"
    py = sys.executable
    subprocess.run(
        [py, "-m", "edgeseg", "export", "segfast_camvid", "--out", str(onnx)],
        check=True,
        capture_output=True,
    )
    runs = {
        "Segmenter": [
            py,
            "-c",
            f"import edgeseg; assert edgeseg.Segmenter('segfast_camvid')"
            f"({str(photo)!r}).shape == (6000, 8000)",
        ],
        "runtime Segmenter": [
            py,
            "-c",
            "from edgeseg_runtime import Segmenter; "
            f"assert Segmenter({str(onnx)!r})({str(photo)!r}).shape == "
            "(6000, 8000)",
        ],
        "predict": [
            py,
            "-m",
            "edgeseg",
            "predict",
            "--model",
            "segfast_camvid",
            str(photo),
            "--out",
            str(tmp_path / "p"),
        ],
        "edgeseg-run": [
            py,
            "-m",
            "edgeseg_runtime",
            "predict",
            str(onnx),
            str(photo),
            "--out",
            str(tmp_path / "q"),
        ],
    }
    for name, code in runs.items():
        peak = _peak_rss(code)
        assert peak < 2 * GB, f"{name}: {peak / GB:.2f} GB"
    assert (tmp_path / "p" / "labels" / "phone.png").is_file()
