"""Small helpers shared by the CLI and the library: argument parsing, atomic writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*$")


def parse_size(text: str | tuple[int, int] | list[int], what: str = "--size") -> tuple[int, int]:
    """Parse an ``HxW`` size such as ``360x480`` into ``(height, width)``.

    Args:
        text: ``"HxW"`` (``"H,W"`` is accepted too) or an ``(H, W)`` pair.
        what: name of the argument, used in the error message.

    Returns:
        ``(height, width)`` as positive integers.

    Raises:
        EdgesegError: if the text is not two positive integers.
    """
    if isinstance(text, (tuple, list)):
        if len(text) == 2 and all(isinstance(v, int) and v > 0 for v in text):
            return int(text[0]), int(text[1])
        raise EdgesegError(f"{what}: expected two positive integers (H, W), got {text!r}")
    m = _SIZE_RE.match(str(text))
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise EdgesegError(
            f"{what}: expected HxW with positive integers (e.g. 360x480), got {text!r}"
        )
    return int(m.group(1)), int(m.group(2))


def positive_int(value: Any, what: str) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a one-line error."""
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise EdgesegError(f"{what}: expected a positive integer, got {value!r}") from None
    if ivalue <= 0 or (isinstance(value, float) and value != ivalue):
        raise EdgesegError(f"{what}: expected a positive integer, got {value!r}")
    return ivalue


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous file intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
