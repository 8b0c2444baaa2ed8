"""One writer per folder: a second training into a run directory that another process is
writing is refused in one line naming that process; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.utils import LOCK_NAME, folder_lock
from tests.cli_checks import assert_one_line_exit_2
from tests.synthetic import make_list_dataset


def _argv(data: Path, run: Path) -> list[str]:
    return [
        "train",
        "--model",
        "segfast",
        "--data",
        str(data),
        "--out",
        str(run),
        "--epochs",
        "1",
        "data.preset=custom",
        "data.classes=[a, b, c]",
        "data.crop_size=24x32",
        "train.batch_size=2",
        "train.progress=false",
    ]


def test_second_training_into_a_busy_run_directory_is_refused(tmp_path: Path, capsys) -> None:
    data = make_list_dataset(tmp_path / "data", {"train": 4, "val": 2})
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the first run's")
    with folder_lock(run, "run directory"):  # the first writer, still running
        err = assert_one_line_exit_2(_argv(data, run), f"PID {os.getpid()}", capsys)
    assert "in use by another edgeseg process" in err
    assert sorted(p.name for p in run.iterdir()) == sorted([LOCK_NAME, "notes.txt"])
    assert (run / "notes.txt").read_text() == "the first run's"


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    code = (
        "import os, sys; from edgeseg.utils import folder_lock\n"
        f"with folder_lock({str(tmp_path)!r}): os._exit(0)\n"
    )  # the holder dies without releasing
    subprocess.run([sys.executable, "-c", code], check=True)
    with folder_lock(tmp_path) as d:
        assert (d / LOCK_NAME).read_text().strip() == str(os.getpid())
    with folder_lock(tmp_path), pytest.raises(EdgesegError, match="in use"), folder_lock(tmp_path):
        pass
