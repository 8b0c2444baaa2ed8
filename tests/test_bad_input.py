"""Bad input gives one line and exit 2 before any heavy work: sizes and threads beyond the
machine, files that are not UTF-8, decompression bombs, unwritable outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.config import load_config
from edgeseg.data import load_image, read_list_file
from edgeseg.errors import ConfigError, DataError, EdgesegError
from edgeseg.utils import parse_size, thread_count


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "l3unet", "--size", "20000x20000"],
        ["bench", "l3unet", "--size", "100000x100000"],
        ["models", "--size", "9000x9000"],
    ],
)
def test_huge_sizes_are_refused_with_the_limit(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "at most 8192 pixels per side" in _one_line(capsys)


def test_size_limit_can_be_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EdgesegError, match="EDGESEG_MAX_SIZE"):
        parse_size("9000x10")
    monkeypatch.setenv("EDGESEG_MAX_SIZE", "10000")
    assert parse_size("9000x10") == (9000, 10)


def test_threads_beyond_the_machine_are_refused(capsys) -> None:
    n = (os.cpu_count() or 1) + 1
    assert main(["profile", "l3unet", "--threads", "10000"]) == 2
    assert "logical CPUs" in _one_line(capsys)
    with pytest.raises(EdgesegError, match="logical CPUs"):
        thread_count(n)
    with pytest.raises(ConfigError, match=r"train\.threads"):
        load_config(None, ["data.root=/d", "train.threads=-1"]).validate()
    with pytest.raises(ConfigError, match=r"train\.out"):
        load_config(None, ["data.root=/d", "train.out="]).validate()
    with pytest.raises(ConfigError, match="label_smoothing"):
        load_config(None, ["data.root=/d", "train.label_smoothing=2"]).validate()


def test_text_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"r\.yaml is not UTF-8"):
        load_config(recipe)
    (tmp_path / "train.txt").write_bytes(b"\xff\xfe a b\n")
    with pytest.raises(DataError, match=r"train\.txt is not UTF-8"):
        read_list_file(tmp_path, "train")


def test_decompression_bomb_is_one_line_with_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(big)
    monkeypatch.setenv("EDGESEG_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(DataError, match=r"200x300.*EDGESEG_MAX_IMAGE_PIXELS"):
        load_image(big)
    monkeypatch.setenv("EDGESEG_MAX_IMAGE_PIXELS", "60000")
    assert load_image(big).shape == (200, 300, 3)


def test_an_output_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        main(
            [
                "profile",
                "l3unet",
                "--size",
                "32x32",
                "--repeats",
                "1",
                "--warmup",
                "1",
                "--json",
                str(blocker / "p.json"),
            ]
        )
        == 2
    )
    assert str(blocker) in _one_line(capsys)
    assert blocker.read_text() == "x"


def test_predict_refuses_two_inputs_with_one_output_name(tmp_path: Path, capsys) -> None:
    for sub, ext in (("a", ".png"), ("a", ".jpg"), ("b", ".png")):
        (tmp_path / sub).mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sub / f"x{ext}")
    argv = [
        "predict",
        "--model",
        "segfast_camvid",
        str(tmp_path / "a" / "x.png"),
        str(tmp_path / "b" / "x.png"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 2
    assert "would both write x.png" in _one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_forged_onnx_metadata_and_bad_opset_are_one_line(tmp_path: Path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xy")
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g)
    e = m.metadata_props.add()
    e.key, e.value = "edgeseg.format", "edgeseg.onnx"
    onnx.save(m, tmp_path / "forged.onnx")
    assert main(["bench", str(tmp_path / "forged.onnx"), "--backends", "ort"]) == 2
    assert "metadata is incomplete" in _one_line(capsys)
    assert (
        main(["export", "segfast_camvid", "--out", str(tmp_path / "m.onnx"), "--opset", "99"]) == 2
    )
    assert "--opset 99: choose 17 to" in _one_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_an_ort_backend_leaves_no_file_behind(
    tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from edgeseg.deploy.segmenter import Segmenter

    _, run = tiny_run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seg = Segmenter(run, backend="ort")
    assert seg(np.zeros((40, 56, 3), np.uint8)).shape == (40, 56)
    assert list(tmp_path.iterdir()) == []  # the export was removed once loaded


def test_a_bench_worker_dies_with_its_parent() -> None:
    import subprocess
    import sys

    from edgeseg.measure.bench import _die_with_parent

    probe = (
        "import ctypes, ctypes.util; libc = ctypes.CDLL(ctypes.util.find_library('c'));"
        "s = ctypes.c_int(); libc.prctl(2, ctypes.byref(s)); print(s.value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        preexec_fn=_die_with_parent,
        check=True,
    )
    assert out.stdout.strip() == "9"  # PR_GET_PDEATHSIG: SIGKILL when the parent dies


def test_an_error_from_a_dataloader_worker_is_its_own_line() -> None:
    from edgeseg.cli import _one_line

    wrapped = DataError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1\nedgeseg.errors.DataError: label 7 out of range '
        "in a.png"
    )
    assert _one_line(wrapped) == "label 7 out of range in a.png"
    assert _one_line(DataError("plain")) == "plain"


def test_litert_without_its_extra_or_with_a_wrong_name_is_one_line(tmp_path, capsys) -> None:
    """``--format litert`` names the extra when litert-torch is missing, and a LiteRT file
    must be called ``*.tflite``; both before any export work."""
    import importlib.util

    litert = ["export", "segfast_camvid", "--format", "litert", "--out"]
    if importlib.util.find_spec("litert_torch") is None:
        assert main([*litert, str(tmp_path / "m.tflite")]) == 2
        assert 'pip install "edgeseg[litert]"' in _one_line(capsys)
    assert main([*litert, str(tmp_path / "m.onnx")]) == 2
    assert "named *.tflite" in _one_line(capsys)
    assert main([*litert, str(tmp_path / "m.tflite"), "--output", "labels"]) == 2
    assert "--output" in _one_line(capsys)
    assert not list(tmp_path.iterdir())
