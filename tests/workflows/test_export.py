"""``edgeseg export --bundle``: the artefact the bench rule picks, its card, its README,
and the torch-free runtime running it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.defaults import OUTPUTS
from edgeseg.deploy.segmenter import Segmenter
from edgeseg.errors import EdgesegError
from tests.cli_checks import assert_one_line_exit_2
from tests.runtime.test_torch_free import run_blocked

HAVE_NNCF = all(importlib.util.find_spec(p) for p in ("nncf", "openvino"))


@pytest.mark.slow
def test_bundle_is_picked_measured_and_runs_without_torch(
    tiny_run, tmp_path: Path, capsys, caplog
) -> None:
    data, run = tiny_run
    bundle = tmp_path / "bundle"
    assert (
        main(
            [
                "export",
                str(run),
                "--bundle",
                str(bundle),
                "--data",
                str(data),
                "--size",
                "40x56",
                "--calib-images",
                "4",
                "--json",
            ]
        )
        == 0
    )
    card = json.loads(capsys.readouterr().out)
    assert "planned: 2 more rounds of " in caplog.text  # the bench's rest, from its first
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "model.json", "model.onnx"]
    assert json.loads((bundle / "model.json").read_text())["format"] == "edgeseg.bundle/1"
    assert card["classes"] == ["a", "b", "c"] and card["input_size"] == [40, 56]
    m = card["measured"]
    assert m["backend"] in card["backends"] and isinstance(m["latency_ms"], float)
    assert 0 <= m["miou"] <= 1
    assert card["precision"] == ("int8" if m["backend"].endswith("int8") else "fp32")
    ref = card["reference_miou"]
    assert card["backends"][m["backend"]]["miou"] >= ref - 0.01  # the bench rule
    assert isinstance(card["kept_fp32"], list)  # mixed precision: modules left in fp32
    assert not card["kept_fp32"] or m["backend"].endswith("int8")
    assert "edgeseg-run predict" in (bundle / "README.md").read_text()
    # The output form was measured on the chosen engine: the fastest within the budget.
    outs = card["outputs"]
    assert set(outs) == set(OUTPUTS) and card["output"] == outs[card["output"]]["applied"]
    chosen = min(
        (f for f, r in outs.items() if r["miou"] >= ref - 0.01),
        key=lambda f: outs[f]["median_ms"],
    )
    assert card["output"] == outs[chosen]["applied"]
    r = run_blocked("predict", bundle, data / "val", "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    seg = Segmenter(bundle / "model.onnx")
    for row in map(json.loads, r.stdout.splitlines()):
        assert (np.asarray(Image.open(row["labels"])) == seg(row["image"])).all()


@pytest.mark.slow
def test_int8_export_with_mixed_precision_names_what_stayed_fp32(
    tiny_run, tmp_path: Path, capsys
) -> None:
    data, run = tiny_run
    out = tmp_path / "m.onnx"
    argv = [
        "export",
        str(run),
        "--out",
        str(out),
        "--format",
        "onnx-int8",
        "--data",
        str(data),
        "--calib-images",
        "4",
        "--mixed-precision",
        "--accuracy-budget",
        "0",
    ]
    assert main([*argv, "--json"]) == 0
    q = json.loads(capsys.readouterr().out)["quantization"]
    assert q["kept_fp32_modules"] == q["mixed"]["kept_fp32"]
    assert q["mixed"]["miou"] >= q["mixed"]["int8_miou"]
    assert main([*argv, "--overwrite"]) == 0  # the text output, and the figure beside
    printed, plot = capsys.readouterr().out, out.with_suffix(".sensitivity.png")
    if q["mixed"].get("sensitivity"):  # all-int8 missed the budget: the search measured
        assert f"int8 sensitivity figure: {plot}" in printed and plot.stat().st_size > 0
    assert_one_line_exit_2(
        [*argv[:-3], "--overwrite", "--data", "", "--mixed-precision"], "needs --data", capsys
    )


def test_bundle_bad_input(tmp_path: Path, capsys) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert_one_line_exit_2(
        ["export", "segfast_camvid", "--bundle", str(full)], "not an empty folder", capsys
    )
    assert (full / "keep.txt").read_text() == "mine" and len(list(full.iterdir())) == 1
    assert_one_line_exit_2(
        ["export", "segfast_camvid", "--bundle", str(tmp_path / "b"), "--format", "onnx-int8"],
        "drop --format",
        capsys,
    )
    (tmp_path / "f").write_text("x")
    assert_one_line_exit_2(
        ["export", "segfast_camvid", "--bundle", str(tmp_path / "f")], "--bundle", capsys
    )


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_NNCF, reason="needs the nncf and openvino packages (extras)")
def test_export_nncf_int8_keeps_metadata_and_parity(tiny_run, tmp_path: Path, capsys) -> None:
    from edgeseg.deploy.export import onnx_metadata

    data, run = tiny_run
    out = tmp_path / "m.onnx"
    assert (
        main(
            [
                "export",
                str(run),
                "--out",
                str(out),
                "--format",
                "onnx-int8-nncf",
                "--data",
                str(data),
                "--size",
                "40x56",
                "--calib-images",
                "4",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["precision"] == "int8" and res["quantization"]["method"] == "nncf-int8"
    assert res["pixel_agreement"] > 0.9
    meta = onnx_metadata(out)
    assert meta["classes"] == ["a", "b", "c"]


def test_bundle_card_names_the_engine_of_the_chosen_backend() -> None:
    from edgeseg.deploy.export import ExportResult
    from edgeseg.workflows.export import _bundle_card

    ckpt = {
        "model": {"name": "m"},
        "dataset": {"classes": ["a"], "palette": [[0, 0, 0]], "mean": [0.5] * 3, "std": [0.2] * 3},
    }
    exp = ExportResult(
        path="m.onnx",
        size_bytes=1,
        opset=18,
        exporter="dynamo",
        max_abs_diff=0.0,
        pixel_agreement=1.0,
        check_images=1,
        check_source="random",
        precision="int8",
        fp32_size_bytes=4,
    )
    rows = {"nncf-int8": {"latency_ms": {"median": 3.0}, "miou": 0.5}}
    card = _bundle_card(ckpt, (40, 56), exp, "nncf-int8", rows, {"backends": {}}, 2)
    assert card["backend"] == "openvino"  # NNCF's file runs in OpenVINO on the device
    assert card["measured"]["backend"] == "nncf-int8"


def test_a_bundle_written_meanwhile_by_another_export_is_left_alone(tmp_path: Path) -> None:
    """Two exports into one folder: the bundle is built beside it and renamed into place
    in one step, so the second finds the first's bundle there and is refused; nothing of
    either is mixed, no temporary folder is left."""
    from edgeseg.workflows.export import _publish_bundle

    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "model.onnx").write_bytes(b"the first export's")
    card = {
        "name": "m",
        "classes": ["a", "b"],
        "palette": [[0, 0, 0], [255, 255, 255]],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "ignore_index": 255,
    }
    with pytest.raises(EdgesegError, match="another process wrote it meanwhile"):
        _publish_bundle(dest, b"the second export's", card)
    assert (dest / "model.onnx").read_bytes() == b"the first export's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
