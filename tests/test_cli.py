from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.cli import main

#: Profiling options that keep a CLI test to a second or two.
FAST = ("--threads", "1", "--warmup", "1", "--repeats", "2")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile", "no_such_model", "--size", "32x32"], "unknown model 'no_such_model'"),
        (["profile", "unet", "--size", "360by480"], "--size"),
        (["profile", "unet", "--size", "0x480"], "--size"),
        (["profile", "unet", "--classes", "0"], "--classes"),
        (["profile", "unet", "--classes", "-3"], "--classes"),
        (["profile", "unet", "--threads", "0"], "--threads"),
        (["profile", "unet", "--threads", "-2"], "--threads"),
        (["models", "--size", "abc"], "--size"),
        (["models", "zzz*"], "no model matches"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_python_m_edgeseg_bad_model_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg", "profile", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("edgeseg: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["squeeze_unet"]["conv_weights"] == 2_613_952 + 64 * 11
    assert by_name["unet"]["flops"] > by_name["squeeze_unet"]["flops"]


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "squeeze*"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ["squeeze_unet"]


def test_profile_json_and_out_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    argv = ["profile", "squeeze_unet", "--size", "48x64", "--classes", "3", *FAST]
    argv += ["--json", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["model"] == "squeeze_unet" and printed["num_classes"] == 3


def test_profile_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "unet", "--size", "32x32", *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "time per stage" in out and "head" in out
