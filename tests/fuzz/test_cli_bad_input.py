"""Bad input through the real command line, each case in a fresh process.

Every case must exit with status 2, print one line on stderr that names the culprit, no
traceback, and leave every file that existed before byte for byte as it was (hashed
before and after). The cases are the families a careful user hits: output paths that
cannot be written, runs that would be overwritten, malformed checkpoints and ONNX
files, text that is not UTF-8, decompression bombs, sizes, threads and numbers out of
range. A property-based test feeds random bytes and random small images to the loaders.
"""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeseg.data import load_image, load_label, read_list_file
from edgeseg.engine.checkpoint import load_checkpoint
from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]


def _png_header(h: int, w: int) -> bytes:
    """A PNG that claims h x w pixels (what a decompression bomb looks like to a reader)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def world(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding every bad input of the cases, next to good ones."""
    data, run = tiny_run
    w = tmp_path_factory.mktemp("fuzz")
    (w / "data").symlink_to(data)
    good = load_checkpoint(run / "best.pt")
    good.pop("path")
    torch.save(good, w / "good.pt")
    bad = {
        "no_state": {k: v for k, v in good.items() if k != "state_dict"},
        "no_dataset": {k: v for k, v in good.items() if k != "dataset"},
        "model_str": {**good, "model": "squeeze_unet"},
        "short_palette": {**good, "dataset": {**good["dataset"], "palette": [[0, 0, 0]]}},
        "version_str": {**good, "format_version": "one"},
        "palette_bad": {
            **good,
            "dataset": {
                **good["dataset"],
                "palette": [[300, -1, "x"]] * len(good["dataset"]["classes"]),
            },
        },
        "std_zero": {**good, "dataset": {**good["dataset"], "std": [0.0, 0.0, 0.0]}},
        "mean_str": {**good, "dataset": {**good["dataset"], "mean": ["a", "b", "c"]}},
        "ignore_neg": {**good, "dataset": {**good["dataset"], "ignore_index": -5}},
    }
    for name, ckpt in bad.items():
        torch.save(ckpt, w / f"{name}.pt")
    (w / "afile").write_text("not a folder")
    (w / "latin1.yaml").write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    (w / "binary.yaml").write_bytes(bytes(range(256)))
    (w / "latin1_data").mkdir()
    (w / "latin1_data" / "train.txt").write_bytes(b"\xe9 \xe9\n")
    (w / "bomb.png").write_bytes(_png_header(20000, 20000))
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(w / "x.png")
    (w / "b").mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(w / "b" / "x.png")
    run_best = w / "best_only"
    run_best.mkdir()
    (run_best / "best.pt").write_bytes((w / "good.pt").read_bytes())
    (w / "noinfo.onnx").write_bytes(_onnx_without_metadata())
    (w / "rank2.onnx").write_bytes(_rank2_onnx_with_metadata(good))
    (w / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (w / "big.png").write_bytes(_png_header(10000, 10000))  # Pillow only warns at 100 MP
    (w / "prev" / "labels").mkdir(parents=True)  # an earlier prediction of x.png
    (w / "prev" / "labels" / "x.png").write_bytes((w / "x.png").read_bytes())
    return w


def _onnx_without_metadata() -> bytes:
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xy")
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(g).SerializeToString()


def _rank2_onnx_with_metadata(ckpt: dict) -> bytes:
    """A (3, 4) -> (3, 4) graph whose edgeseg metadata claims a segmenter."""
    import json

    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 4]) for n in "xy")
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    d = ckpt["dataset"]
    meta = {"format": "edgeseg.onnx", "model": ckpt["model"], **d}
    for k in ("format", "model", "classes", "palette", "mean", "std", "ignore_index"):
        v = meta[k]
        m.metadata_props.add(key=f"edgeseg.{k}", value=v if isinstance(v, str) else json.dumps(v))
    return m.SerializeToString()


R = "data.preset=custom"  # overrides a train case needs besides the one under test
CASES = [
    # output paths
    ("train-out-file", ["train", "--model", "l3unet", "--data", "data", "--out", "afile"], "afile"),
    (
        "train-out-under-file",
        ["train", "--model", "l3unet", "--data", "data", "--out", "afile/run"],
        "afile",
    ),
    ("predict-out-file", ["predict", "good.pt", "x.png", "--out", "afile"], "afile"),
    ("export-out-under-file", ["export", "good.pt", "--out", "afile/m.onnx"], "afile"),
    ("export-out-folder", ["export", "good.pt", "--out", "b"], "is a folder"),
    (
        "bench-json-under-file",
        ["bench", "l3unet", "--size", "32x32", "--backends", "ort", "--json", "afile/b.json"],
        "afile",
    ),
    (
        "bench-keep-file",
        ["bench", "l3unet", "--size", "32x32", "--backends", "ort", "--keep", "afile"],
        "afile",
    ),
    (
        "profile-json-under-file",
        ["profile", "l3unet", "--size", "32x32", "--json", "afile/p.json"],
        "afile",
    ),
    (
        "eval-json-under-file",
        ["eval", "good.pt", "--data", "data", "--json", "afile/m.json"],
        "afile",
    ),
    ("compress-out-file", ["compress", "good.pt", "--method", "prune", "--out", "afile"], "afile"),
    (
        "compare-out-file",
        [
            "compare",
            "--models",
            "l3unet",
            "--data",
            "data",
            "--out",
            "afile",
            "recipe.data.preset=custom",
            "recipe.data.classes=[a, b, c]",
        ],
        "afile",
    ),
    # runs and outputs that would be overwritten
    (
        "train-over-best-only",
        ["train", "--model", "l3unet", "--data", "data", "--out", "best_only"],
        "already holds a run",
    ),
    (
        "train-out-empty",
        ["train", "--model", "l3unet", "--data", "data", "train.out="],
        "train.out",
    ),
    (
        "predict-same-stem",
        ["predict", "good.pt", "x.png", "b/x.png", "--out", "p"],
        "would both write x.png",
    ),
    # files the command did not create: replaced only with --overwrite
    ("export-out-existing", ["export", "good.pt", "--out", "afile"], "--out afile: exists"),
    (
        "eval-json-existing",
        ["eval", "good.pt", "--data", "data", "--json", "afile"],
        "--json afile: exists",
    ),
    (
        "profile-json-existing",
        ["profile", "l3unet", "--size", "32x32", "--json", "afile"],
        "--json afile: exists",
    ),
    (
        "bench-keep-not-empty",
        ["bench", "l3unet", "--size", "32x32", "--backends", "ort", "--keep", "b"],
        "--keep b: not empty",
    ),
    ("predict-over-earlier", ["predict", "good.pt", "x.png", "--out", "prev"], "prev/labels/x.png"),
    (
        "predict-alpha-nan",
        ["predict", "good.pt", "x.png", "--out", "p", "--alpha", "nan"],
        "--alpha",
    ),
    # checkpoints
    *[
        (f"{cmd}-{bad}", [*argv, f"{bad}.pt", *rest], f"{bad}.pt")
        for bad in (
            "no_state",
            "no_dataset",
            "model_str",
            "short_palette",
            "version_str",
            "palette_bad",
            "std_zero",
            "mean_str",
            "ignore_neg",
        )
        for cmd, argv, rest in (
            ("eval", ["eval"], ["--data", "data"]),
            ("export", ["export", "--out", "m.onnx"], []),
            ("bench", ["bench", "--backends", "eager"], []),
        )
    ],
    # ONNX files without edgeseg's metadata
    ("bench-onnx-noinfo", ["bench", "noinfo.onnx"], "noinfo.onnx"),
    ("predict-onnx-noinfo", ["predict", "noinfo.onnx", "x.png", "--out", "p"], "noinfo.onnx"),
    (
        "eval-onnx",
        ["eval", "noinfo.onnx", "--data", "data"],
        "noinfo.onnx is an ONNX file, not a checkpoint",
    ),
    # text that is not UTF-8
    ("recipe-latin1", ["train", "--recipe", "latin1.yaml", "--data", "data"], "latin1.yaml"),
    ("recipe-binary", ["train", "--recipe", "binary.yaml", "--data", "data"], "binary.yaml"),
    ("compare-latin1", ["compare", "--config", "latin1.yaml", "--data", "data"], "latin1.yaml"),
    ("list-latin1", ["eval", "good.pt", "--data", "latin1_data", "--split", "train"], "train.txt"),
    # images and sizes
    ("predict-bomb", ["predict", "good.pt", "bomb.png", "--out", "p"], "bomb.png"),
    *[
        (f"{c}-size-{s}", [*argv, "--size", s], "--size")
        for s in ("20000x20000", "100000x100000", "0x0")
        for c, argv in (
            ("profile", ["profile", "l3unet"]),
            ("bench", ["bench", "l3unet"]),
            ("predict", ["predict", "good.pt", "x.png", "--out", "p"]),
            ("eval", ["eval", "good.pt", "--data", "data"]),
        )
    ],
    # numbers
    ("profile-threads", ["profile", "l3unet", "--threads", "10000"], "--threads"),
    *[
        (
            f"train-{o}",
            ["train", "--model", "l3unet", "--data", "data", "--out", "r", o],
            o.split("=")[0],
        )
        for o in (
            "train.threads=10000",
            "train.threads=-1",
            "train.label_smoothing=2",
            "optim.betas=[2, 0.9]",
            "optim.momentum=-1",
            "data.crop_size=[0, 0]",
            "data.crop_size=[-5, 10]",
            "data.eval_size=0x0",
            "train.epochs=0",
            "sched.factor=2",
            "train.max_minutes=-1",
            "optim.grad_clip=0",
            "train.seed=10000000000",
            "data.scale=[1, .inf]",
            "sched.min_lr=.inf",
            "data.num_workers=10000",
        )
    ],
    (
        "train-void-is-a-class",
        [
            "train",
            "--model",
            "l3unet",
            "--data",
            "data",
            "--out",
            "r",
            R,
            "data.classes=[a, b, c]",
            "data.ignore_index=1",
        ],
        "ignore_index",
    ),
    *[
        (
            f"bench-budget-{b}",
            ["bench", "good.pt", "--data", "data", "--accuracy-budget", b],
            "--accuracy-budget",
        )
        for b in ("nan", "-1")
    ],
    (
        "compare-budget-nan",
        [
            "compare",
            "--models",
            "l3unet",
            "--data",
            "data",
            "--out",
            "c",
            "--accuracy-budget",
            "nan",
        ],
        "accuracy_budget nan",
    ),
    ("export-opset", ["export", "good.pt", "--out", "m.onnx", "--opset", "99"], "--opset 99"),
    # files that say one thing and hold another
    ("predict-onnx-rank2", ["predict", "rank2.onnx", "x.png", "--out", "p"], "rank 2, not 4"),
    (
        "compare-corrupt-checkpoint",
        ["compare", "--models", "l3unet=random.pt", "--data", "data", "--out", "c"],
        "--models l3unet=random.pt: cannot read checkpoint",
    ),
    (
        "compare-budget-empty",
        ["compare", "--models", "l3unet", "--data", "data", "--out", "c", "--budget", ""],
        "--budget '': give a value",
    ),
    ("predict-over-pixel-limit", ["predict", "good.pt", "big.png", "--out", "p"], "big.png has"),
    # memory known to be out of reach, refused before it is allocated
    (
        "bench-classes-huge",
        ["bench", "segfast", "--size", "512x512", "--classes", "1000000", "--backends", "eager"],
        "lower --size (or --classes)",
    ),
    (
        "profile-batch-huge",
        ["profile", "segfast", "--size", "64x64", "--batch-size", "1000000"],
        "lower --size or --batch-size",
    ),
    *[
        (
            f"train-{o.split('=')[0]}-huge",
            ["train", "--model", m, "--data", "data", "--out", "r", o],
            needle,
        )
        for m, o, needle in (
            ("segfast", "data.crop_size=[8192, 8192]", "lower data.crop_size"),
            ("unet", "data.eval_size=[8192, 8192]", "lower data.eval_size"),
            ("segfast", "model.kwargs={width: 100000}", "choose smaller model options"),
            ("segfast", "model.kwargs={width: 1000000000}", "more than 2**63 bytes"),
        )
    ],
]


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


#: Address space of each case's process: a runaway allocation fails that case (MemoryError,
#: a traceback the test reports) instead of taking the machine's memory. Above what the
#: memory checks of the cases' valid parts need (a U-Net training estimate is 8.6 GB), so
#: each case is still refused for its own culprit.
MEMORY_LIMIT = 16 * 2**30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _edgeseg(world: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m edgeseg ARGV`` in ``world``, its memory limited, with ``env`` added."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGESEG_CACHE_DIR": str(world / ".cache"), **env}
    return subprocess.run(
        [sys.executable, "-m", "edgeseg", *argv],
        cwd=world,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
    )


@pytest.mark.parametrize(("case", "argv", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    world: Path, case: str, argv: list[str], needle: str
) -> None:
    before = _hashes(world)
    proc = _edgeseg(world, argv)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (case, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(err) == 1 and needle in err[0], err
    after = _hashes(world)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed


@pytest.mark.parametrize(
    ("var", "argv"),
    [
        ("EDGESEG_MAX_IMAGE_PIXELS", ["predict", "good.pt", "x.png", "--out", "p"]),
        ("EDGESEG_MAX_SIZE", ["profile", "l3unet", "--size", "64x64"]),
        ("EDGESEG_MAX_WORK_PIXELS", ["predict", "good.pt", "x.png", "--out", "p"]),
    ],
)
def test_a_limit_variable_that_is_not_a_number_is_one_line(
    world: Path, var: str, argv: list[str]
) -> None:
    proc = _edgeseg(world, argv, **{var: "abc"})
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and f"{var}='abc'" in err[0], proc.stderr
    assert not (world / "p").exists()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=2048))
def test_loaders_turn_random_bytes_into_one_error(tmp_path: Path, blob: bytes) -> None:
    for suffix, reader in ((".png", load_image), (".png", load_label), (".pt", load_checkpoint)):
        f = tmp_path / f"x{suffix}"
        f.write_bytes(blob)
        try:
            reader(f)
        except EdgesegError as e:
            assert "\n" not in str(e)
    (tmp_path / "train.txt").write_bytes(blob)
    try:
        read_list_file(tmp_path, "train")
    except EdgesegError as e:
        assert "\n" not in str(e).strip()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "F"]),
)
def test_loaders_on_random_small_images(tmp_path: Path, h: int, w: int, mode: str) -> None:
    arr = np.random.default_rng(h * 13 + w).integers(0, 255, (h, w, 3 if mode in ("RGB",) else 1))
    img = Image.new(mode, (w, h))
    f = tmp_path / ("x.tif" if mode in ("I;16", "F") else "x.png")
    img.save(f)
    del arr
    try:
        rgb = load_image(f)
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    except EdgesegError as e:
        assert mode in ("I;16", "F") and "\n" not in str(e)
