from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.utils import atomic_write_json, atomic_write_text, parse_size, positive_int


@pytest.mark.parametrize(
    ("text", "size"),
    [("360x480", (360, 480)), ("97X131", (97, 131)), ("1,2", (1, 2)), ((5, 6), (5, 6))],
)
def test_parse_size(text: object, size: tuple[int, int]) -> None:
    assert parse_size(text) == size  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["360", "0x480", "-1x3", "axb", "360x480x3", (0, 5), (1.5, 2)])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(EdgesegError, match="--size"):
        parse_size(text)  # type: ignore[arg-type]


def test_positive_int() -> None:
    assert positive_int("3", "n") == 3
    for bad in (0, -1, "x", 1.5, None):
        with pytest.raises(EdgesegError, match="n:"):
            positive_int(bad, "n")


def test_atomic_write_keeps_old_file_on_failure(tmp_path) -> None:
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": Boom()})  # fails while serialising
    assert path.read_text().strip().startswith("{")
    assert '"a": 1' in path.read_text()
    atomic_write_text(path, "x")
    assert path.read_text() == "x"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_atomic_writes_get_the_usual_permissions(tmp_path) -> None:
    import os

    from edgeseg.utils import atomic_write_text

    atomic_write_text(tmp_path / "a.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_folder_lock_removes_a_killed_writers_temporary_files(tmp_path: Path) -> None:
    """A checkpoint write cut short by a kill leaves ``.last.pt.XXXX.tmp``; the next holder
    of the folder's lock removes it (nothing else is touched)."""
    from edgeseg.utils import folder_lock

    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.pt").write_bytes(b"the checkpoint")
    with folder_lock(tmp_path, "run directory"):
        pass
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "last.pt").read_bytes()


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    import errno

    from edgeseg.utils import atomic_write_bytes

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as e:
        atomic_write_bytes(tmp_path / "e.json", b"{}")
    assert e.value.filename == str(tmp_path / "e.json")
    assert list(tmp_path.iterdir()) == []
