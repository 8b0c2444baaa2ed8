"""``edgeseg export --bundle``: the artefact the bench rule picks, its card, its README,
and the torch-free runtime running it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.deploy.segmenter import Segmenter
from tests.cli_checks import assert_one_line_exit_2
from tests.runtime.test_torch_free import run_blocked


@pytest.mark.slow
def test_bundle_is_picked_measured_and_runs_without_torch(tiny_run, tmp_path: Path, capsys) -> None:
    data, run = tiny_run
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--bundle", str(bundle), "--data", str(data),
                 "--size", "40x56", "--calib-images", "4", "--json"]) == 0  # fmt: skip
    card = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "model.json", "model.onnx"]
    assert json.loads((bundle / "model.json").read_text())["format"] == "edgeseg.bundle/1"
    assert card["classes"] == ["a", "b", "c"] and card["input_size"] == [40, 56]
    m = card["measured"]
    assert m["backend"] in card["backends"] and isinstance(m["latency_ms"], float)
    assert 0 <= m["miou"] <= 1
    assert card["precision"] == ("int8" if m["backend"].endswith("int8") else "fp32")
    ref = card["reference_miou"]
    assert card["backends"][m["backend"]]["miou"] >= ref - 0.01  # the bench rule
    assert "edgeseg-run predict" in (bundle / "README.md").read_text()
    r = run_blocked("predict", bundle, data / "val", "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    seg = Segmenter(bundle / "model.onnx")
    for row in map(json.loads, r.stdout.splitlines()):
        assert (np.asarray(Image.open(row["labels"])) == seg(row["image"])).all()


def test_bundle_bad_input(tmp_path: Path, capsys) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert_one_line_exit_2(["export", "segfast_camvid", "--bundle", str(full)],
                           "not an empty folder", capsys)  # fmt: skip
    assert (full / "keep.txt").read_text() == "mine" and len(list(full.iterdir())) == 1
    assert_one_line_exit_2(["export", "segfast_camvid", "--bundle", str(tmp_path / "b"),
                            "--format", "onnx-int8"], "drop --format", capsys)  # fmt: skip
    (tmp_path / "f").write_text("x")
    assert_one_line_exit_2(["export", "segfast_camvid", "--bundle", str(tmp_path / "f")],
                           "--bundle", capsys)  # fmt: skip
