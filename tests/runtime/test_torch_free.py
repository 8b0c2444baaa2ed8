"""The torch-free runtime: edgeseg-run in a process where torch and edgeseg cannot be
imported gives the labels of the PyTorch path; its bad inputs are one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg import create_model
from edgeseg.deploy.export import export_onnx
from edgeseg.deploy.segmenter import Segmenter
from tests.synthetic import make_list_dataset

CAMVID = Path(os.environ.get("EDGESEG_CAMVID", Path(__file__).parents[3] / "shared/data/camvid"))

# Run edgeseg-run with every import of torch or of the edgeseg package refused.
_BLOCKED = """
import sys
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "edgeseg"):
            raise ImportError(f"{name} is not importable here")
sys.meta_path.insert(0, _Refuse())
from edgeseg_runtime.cli import main
rc = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "edgeseg"))
assert not leaked, leaked
sys.exit(rc)
"""


def run_blocked(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``edgeseg-run ARGS`` with torch and edgeseg unimportable."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


META = {
    "model": {"name": "l3unet", "num_classes": 3},
    "classes": ["a", "b", "c"],
    "palette": [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    "ignore_index": 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "layout": "NCHW",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An edgeseg ONNX file of a small network, and a folder of images."""
    d = tmp_path_factory.mktemp("rt")
    torch.manual_seed(0)
    model = create_model("l3unet", num_classes=3).eval()
    export_onnx(model, d / "m.onnx", input_size=(48, 64), metadata=META)
    data = make_list_dataset(d / "data", {"val": 3}, size=(50, 70))
    return d / "m.onnx", data / "val"


def test_predicts_without_torch_and_matches_the_torch_segmenter(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    onnx, images = exported
    r = run_blocked("predict", onnx, images, "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 3 and all(isinstance(row["latency_ms"], float) for row in rows)
    seg = Segmenter(onnx, backend="ort")
    for row in rows:
        labels = np.asarray(Image.open(row["labels"]))
        assert (labels == seg(row["image"])).all()


def test_a_file_without_metadata_needs_classes(exported: tuple[Path, Path], tmp_path: Path) -> None:
    import onnx as onnx_lib

    src, images = exported
    proto = onnx_lib.load(str(src))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx_lib.save(proto, str(bare))
    r = run_blocked("predict", bare, images, "--out", tmp_path / "p")
    assert r.returncode == 2 and "no edgeseg metadata" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()
    r = run_blocked("predict", bare, images, "--out", tmp_path / "p", "--classes", "a,b,c")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "p" / "labels").iterdir())) == 3


@pytest.mark.parametrize(
    "case",
    [
        "corrupt-onnx",
        "bundle-json",
        "bundle-format",
        "bundle-model",
        "deep-image",
        "out-is-file",
        "mean-without-classes",
    ],
)
def test_bad_input_is_one_line(case: str, exported: tuple[Path, Path], tmp_path: Path) -> None:
    onnx, images = exported
    model, inputs, extra = onnx, [images], []
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(onnx.read_bytes())
    card = {"format": "edgeseg.bundle/1", "model_file": "model.onnx", **META}
    if case == "corrupt-onnx":
        model = tmp_path / "bad.onnx"
        model.write_bytes(b"\x08\x07garbage")
    elif case.startswith("bundle"):
        model = bundle
        text = json.dumps(card)
        if case == "bundle-json":
            text = text[:-5]
        elif case == "bundle-format":
            text = json.dumps({**card, "format": "other/9"})
        else:
            (bundle / "model.onnx").unlink()
        (bundle / "model.json").write_text(text)
    elif case == "deep-image":
        deep = tmp_path / "deep.png"
        Image.fromarray(np.zeros((8, 8), np.uint16)).save(deep)
        inputs = [deep]
    elif case == "out-is-file":
        (tmp_path / "o").write_text("keep me")
    else:
        extra = ["--mean", "0.5,0.5,0.5"]
    out = tmp_path / "o"
    r = run_blocked("predict", model, *inputs, "--out", out, *extra)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseg-run: error:"), r.stderr
    if case == "out-is-file":
        assert out.read_text() == "keep me"
    else:
        assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "val.txt").is_file(), reason="needs the CamVid data")
def test_shipped_network_on_camvid_val_equals_the_torch_path(tmp_path: Path) -> None:
    from edgeseg.workflows.export import export_checkpoint

    export_checkpoint("erfnet_camvid", tmp_path / "erf.onnx")
    images = sorted((CAMVID / "val").iterdir())[:4]
    r = run_blocked("predict", tmp_path / "erf.onnx", *images, "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    eager, ort = Segmenter("erfnet_camvid", backend="eager"), Segmenter(tmp_path / "erf.onnx")
    for row in map(json.loads, r.stdout.splitlines()):
        labels = np.asarray(Image.open(row["labels"]))
        assert (labels == ort(row["image"])).all()  # the same engine: the same labels
        assert (labels == eager(row["image"])).mean() > 0.9999  # PyTorch's own kernels
