from __future__ import annotations

import os

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
