"""A full disk, for real: commands write onto a small tmpfs (mounted where this process
may mount one; skipped with the reason where it may not) and must end with exit status 2
and one line naming the file, leaving nothing half-written and nothing of before lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _mount(where: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``where``; the reason it could not, or None."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run mount: {e}"
    return None if r.returncode == 0 else f"cannot mount a tmpfs here: {r.stderr.strip()}"


def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where`` for the test's duration (skipped where it cannot)."""
    why = _mount(where, size)
    if why:
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB file system at ``tmp_path/small``."""
    yield from _tmpfs(tmp_path / "small", "512k")


def _fill(folder: Path) -> None:
    """Take every free byte of the file system holding ``folder``."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    break
    finally:
        os.close(fd)


def _run(*argv: str | Path, tool: str = "edgeseg") -> subprocess.CompletedProcess[str]:
    mod = "edgeseg.cli" if tool == "edgeseg" else "edgeseg_runtime.cli"
    code = f"import sys; from {mod} import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, timeout=600
    )


def _one_line_naming(r: subprocess.CompletedProcess[str], path: Path) -> None:
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    # One error line, the last, naming the file (a training's plan line may precede it).
    assert errors == lines[-1:] and str(path) in errors[0] and "space" in errors[0], r.stderr


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name != "filler")


def test_export_onto_a_full_disk(small: Path) -> None:
    r = _run("export", "segfast_camvid", "--size", "64x64", "--out", small / "m.onnx")
    _one_line_naming(r, small)
    assert _left(small) == []  # no partial file, no temporary


def test_eval_json_onto_a_full_disk(small: Path, tiny_run) -> None:
    data, run = tiny_run
    (small / "e.json").write_text('{"before": true}')  # a file of before: kept as it was
    _fill(small)
    r = _run("eval", run, "--data", data, "--json", small / "e.json", "--overwrite")
    _one_line_naming(r, small / "e.json")
    assert (small / "e.json").read_text() == '{"before": true}' and _left(small) == ["e.json"]


def test_runtime_predict_and_json_onto_a_full_disk(small: Path, tiny_run, tmp_path: Path) -> None:
    from edgeseg.workflows.export import export_checkpoint

    data, run = tiny_run
    model = tmp_path / "m.onnx"
    export_checkpoint(run, model)
    images = sorted((data / "val").glob("*.png"))[:2] or sorted(data.rglob("*.png"))[:2]
    _fill(small)
    r = _run("predict", model, *images, "--out", small / "p", tool="runtime")
    _one_line_naming(r, small / "p")
    assert not list((small / "p").glob("*.png")) if (small / "p").exists() else True
    assert not [n for n in _left(small) if n.endswith(".tmp")]
    r = _run(
        "predict",
        model,
        images[0],
        "--out",
        tmp_path / "ok",
        "--json",
        small / "rows.jsonl",
        tool="runtime",
    )
    _one_line_naming(r, small / "rows.jsonl")
    assert not (small / "rows.jsonl").exists()


def test_training_onto_a_full_disk(small: Path, tiny_run) -> None:
    data, _ = tiny_run
    r = _run(
        "train",
        "--model",
        "segfast",
        "--data",
        data,
        "--epochs",
        "1",
        "--out",
        small / "run",
        "data.preset=custom",
        "data.classes=[a, b, c]",
        "data.crop_size=32x48",
        "train.batch_size=4",
        "train.progress=false",
    )
    _one_line_naming(r, small / "run")
    assert not [n for n in _left(small) if n.endswith(".tmp")]


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[Path]:
    """A 256 MiB file system at ``tmp_path/roomy`` (room for a small comparison)."""
    yield from _tmpfs(tmp_path / "roomy", "256m")


def test_compare_keeps_the_models_done_when_the_disk_fills(
    roomy: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import json

    from edgeseg.cli import main
    from edgeseg.workflows import compare as compare_mod
    from tests.synthetic import make_list_dataset

    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    out = roomy / "cmp"
    one_model, done = compare_mod._one_model, []

    def then_fill(*args, **kwargs):  # the disk fills once the first model is done
        if done:
            _fill(roomy)
        one_model(*args, **kwargs)
        done.append(1)

    monkeypatch.setattr(compare_mod, "_one_model", then_fill)
    argv = ["compare", "--models", "l3unet,segfast", "--data", str(data), "--budget", "1 epochs"]
    more = ["recipe.data.preset=custom", "recipe.data.classes=[a, b, c]"]
    code = main([*argv, "--out", str(out), "--backends", "eager", *more])
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(err) == 1 and str(out) in err[0] and "space" in err[0], err
    res = json.loads((out / "results.json").read_text())  # as saved after the first model
    assert res["models"]["l3unet"]["status"] == "done"
    assert res["models"].get("segfast", {}).get("status") != "done"
    assert not [p for p in out.rglob("*.tmp")]
