"""edgeseg-run checks a bundle's card against its graph: a tampered card is refused in one
line (exit 2) before any image is segmented, so it never yields garbage labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeseg_runtime.bundle import write_bundle
from edgeseg_runtime.cli import main as run_main
from PIL import Image

from edgeseg.deploy.export import export_onnx
from edgeseg.models import create_model

CARD = {
    "name": "l3unet",
    "classes": ["a", "b", "c"],
    "palette": [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "layout": "NCHW",
    "input_size": [48, 64],
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cards")
    torch.manual_seed(0)
    model = create_model("l3unet", num_classes=3).eval()
    export_onnx(model, d / "m.onnx", input_size=(48, 64), metadata=CARD)
    write_bundle(d / "bundle", (d / "m.onnx").read_bytes(), CARD)
    Image.fromarray(np.full((48, 64, 3), 100, np.uint8)).save(d / "img.png")
    return d / "bundle", d / "img.png"


def _tampered(src: Path, dst: Path, **change) -> Path:
    dst.mkdir()
    (dst / "model.onnx").write_bytes((src / "model.onnx").read_bytes())
    card = json.loads((src / "model.json").read_text())
    (dst / "model.json").write_text(json.dumps({**card, **change}))
    return dst


def test_the_untouched_bundle_runs(bundle, tmp_path: Path) -> None:
    folder, img = bundle
    assert run_main(["predict", str(folder), str(img), "--out", str(tmp_path / "o")]) == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"classes": ["a", "b"], "palette": [[1, 1, 1]] * 2},
            "names 2 classes but the graph gives 3",
        ),
        ({"std": [math.nan, 0.2, 0.2]}, "std finite and positive"),
        ({"std": [0.0, 0.2, 0.2]}, "std finite and positive"),
        ({"palette": [[300, 0, 0], [0, 0, 0], [0, 0, 0]]}, "palette needs an RGB colour"),
        ({"classes": [str(i) for i in range(300)]}, "uint8 labels hold 256"),
        ({"classes": "abc"}, "classes must be a list of names"),
        ({"layout": "NHWC"}, "its card says layout NHWC, but the graph's input"),
    ],
)
def test_tampered_cards_are_one_line(bundle, tmp_path: Path, capsys, change, needle) -> None:
    folder = _tampered(bundle[0], tmp_path / "b", **change)
    out = tmp_path / "o"
    assert run_main(["predict", str(folder), str(bundle[1]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # no labels written


def test_thread_counts_beyond_the_machine_are_refused(bundle, tmp_path: Path, capsys) -> None:
    folder, img = bundle
    argv = ["predict", str(folder), str(img), "--out", str(tmp_path / "o"), "--threads", "10000"]
    assert run_main(argv) == 2
    assert "threads" in capsys.readouterr().err


def test_a_card_nested_thousands_deep_is_one_line(bundle, tmp_path: Path, capsys) -> None:
    folder = _tampered(bundle[0], tmp_path / "b")
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    for argv in (
        ["info", str(folder)],
        ["predict", str(folder), str(bundle[1]), "--out", str(tmp_path / "o")],
    ):
        assert run_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "not readable JSON (RecursionError)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        (["--size", "8192x8192"], "more than the 2,000,000 a segmenter runs its network at"),
        (["--size", "abc"], "expected HxW"),
        (["--threads", "0"], "expected a positive whole number"),
    ],
)
def test_bad_arguments_are_one_line_without_the_usage(
    bundle, tmp_path: Path, capsys, flag, needle
) -> None:
    folder, img = bundle
    with pytest.raises(SystemExit) as stop:
        run_main(["predict", str(folder), str(img), "--out", str(tmp_path / "o"), *flag])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and needle in err and len(err.splitlines()) == 1, err
