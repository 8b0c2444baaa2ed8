"""Batch prediction on Ray (``edgeseg-run predict --ray``): the labels of the one-process
path, resumable after a kill without rewriting finished files, torch-free; bad input is
one line, exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from edgeseg_runtime.cli import main
from PIL import Image

from tests.raycluster import ENV
from tests.runtime.test_torch_free import _BLOCKED, exported  # noqa: F401 - the fixture
from tests.synthetic import make_list_dataset


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "labels").glob("*.png"))}


@pytest.mark.slow
def test_ray_predict_equals_one_process_and_resumes_after_a_kill(
    exported: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray")
    onnx, _ = exported
    images = make_list_dataset(tmp_path / "data", {"val": 240}, size=(50, 70)) / "val"
    assert main(["predict", str(onnx), str(images), "--out", str(tmp_path / "one")]) == 0
    out = tmp_path / "ray"
    cmd = [
        sys.executable,
        "-c",
        _BLOCKED,
        "predict",
        str(onnx),
        str(images),
        "--out",
        str(out),
        "--ray",
        "local",
        "--actors",
        "2",
        "--threads",
        "1",
    ]
    # Killed part-way (SIGKILL of the driver: no clean-up of any kind), then run again.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    end = time.monotonic() + 300
    while time.monotonic() < end and len(list((out / "labels").glob("*.png"))) < 20:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (out / "labels").glob("*.png")}
    assert 20 <= len(first) < 240, len(first)
    for name in first:  # every label file there is whole (written by rename)
        assert np.asarray(Image.open(out / "labels" / name)).shape == (50, 70)
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and len(r.stdout.strip().splitlines()) == 1, (r.stdout, r.stderr)
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["images"] == 240 and summary["failed"] == 0
    assert summary["skipped"] >= len(first) and summary["written"] + summary["skipped"] == 240
    # Throughput and latency are reported (their values are benchmarks/scale.py's business).
    assert isinstance(summary["images_per_s"], float)
    assert set(summary["latency_ms"]) == {"median", "p90", "mean"}
    for name, mtime in first.items():  # finished files were not written again
        assert (out / "labels" / name).stat().st_mtime_ns == mtime, name
    one, ray = _labels(tmp_path / "one"), _labels(out)
    assert one.keys() == ray.keys() and len(one) == 240
    assert all((one[k] == ray[k]).all() for k in one)
    assert len(list((out / "overlays").glob("*.png"))) == 240


@pytest.mark.slow
def test_bad_images_fail_alone_and_labels_only(
    exported: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    pytest.importorskip("ray")
    onnx, images = exported
    listed = tmp_path / "list.txt"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    listed.write_text("".join(f"{p}\n" for p in sorted(images.glob("*.png"))) + f"{bad}\n")
    out = tmp_path / "o"
    args = [
        "predict",
        str(onnx),
        str(listed),
        "--out",
        str(out),
        "--ray",
        "local",
        "--no-overlays",
        "--json",
        str(tmp_path / "rows.jsonl"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 4 image(s) failed" in err and "broken" in err
    rows = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["failed", "written", "written", "written"]
    assert len(list((out / "labels").glob("*.png"))) == 3 and not (out / "overlays").exists()


def test_without_ray_or_a_head_is_one_line(
    exported: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    capsys,
    monkeypatch,
) -> None:
    onnx, images = exported
    args = ["predict", str(onnx), str(images), "--out", str(tmp_path / "o")]
    monkeypatch.setitem(sys.modules, "ray", None)  # first without Ray installed
    assert main([*args, "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'edgeseg-runtime[ray]'" in err, err
    monkeypatch.undo()
    pytest.importorskip("ray")
    assert main([*args, "--ray", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Ray head answers" in err, err
    assert main([*args, "--ray", "nonsense"]) == 2
    assert "expected local, auto or HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "o" / "labels").exists()
