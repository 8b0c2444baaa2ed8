"""Small helpers shared by the CLI and the library: argument parsing, atomic writes, the
one-writer-per-folder lock."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from edgeseg_runtime.files import atomic_write_bytes
from edgeseg_runtime.processing import max_side

from edgeseg.errors import EdgesegError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*$")


def _checked(h: int, w: int, what: str) -> tuple[int, int]:
    limit = max_side()
    if h > limit or w > limit:
        raise EdgesegError(
            f"{what} {h}x{w}: at most {limit} pixels per side (set EDGESEG_MAX_SIZE to raise it)"
        )
    return h, w


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
            return _checked(int(text[0]), int(text[1]), what)
        raise EdgesegError(f"{what}: expected two positive integers (H, W), got {text!r}")
    m = _SIZE_RE.match(str(text))
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise EdgesegError(
            f"{what}: expected HxW with positive integers (e.g. 360x480), got {text!r}"
        )
    return _checked(int(m.group(1)), int(m.group(2)), what)


def positive_int(value: Any, what: str) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a one-line error."""
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise EdgesegError(f"{what}: expected a positive integer, got {value!r}") from None
    if ivalue <= 0 or (isinstance(value, float) and value != ivalue):
        raise EdgesegError(f"{what}: expected a positive integer, got {value!r}")
    return ivalue


def thread_count(value: Any, what: str = "--threads") -> int:
    """A positive thread count no larger than this machine's logical CPUs (more threads
    than cores only contend; thousands make every run crawl).

    Raises:
        EdgesegError: not a positive integer, or more than the machine has.
    """
    n = positive_int(value, what)
    cpus = os.cpu_count() or 1
    if n > cpus:
        raise EdgesegError(f"{what} {n}: this machine has {cpus} logical CPUs")
    return n


def check_output(path: str | os.PathLike[str], what: str, folder: bool) -> Path:
    """Refuse, before any work, an output the command could not write.

    ``folder``: ``path`` is a folder to create or fill (a run, predictions); else a file
    to write (an ONNX model, a JSON report), which must not be a folder.

    Raises:
        EdgesegError: ``path`` is a file where a folder goes (or the reverse), sits under
            a file, or its nearest existing folder is not writable.
    """
    p = Path(path)
    if str(path) == "":
        raise EdgesegError(f"{what}: empty path")
    if p.exists() and folder != p.is_dir():
        kind = "a file" if folder else "a folder"
        raise EdgesegError(f"{what} {p} is {kind}")
    parent = p if folder else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise EdgesegError(f"{what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgesegError(f"{what} {p}: {parent} is not writable")
    return p


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """A user's text file as UTF-8, with a one-line error naming it otherwise.

    Raises:
        EdgesegError: missing, unreadable (permissions, a folder) or not UTF-8 text.
    """
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EdgesegError(f"{what} {p} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise EdgesegError(f"cannot read {what} {p}: {e.strerror or e}") from None


def format_duration(seconds: float) -> str:
    """``95`` -> ``"1 min 35 s"``, ``7300`` -> ``"2 h 02 min"``: a duration to plan with."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def finish_time(seconds: float) -> str:
    """The wall-clock time ``seconds`` from now, ``HH:MM`` (local time)."""
    return time.strftime("%H:%M", time.localtime(time.time() + max(0.0, seconds)))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_record(stem: str | os.PathLike[str], record: Any, markdown: str) -> str:
    """A measurement's record: ``stem.json`` (the data) and ``stem.md`` (its table), each
    written atomically. Returns the table (to print)."""
    path = Path(stem)
    atomic_write_json(path.with_suffix(".json"), record)
    atomic_write_text(path.with_suffix(".md"), markdown)
    return markdown


#: The lock file in a folder an edgeseg process writes (run directory, bundle, compare).
LOCK_NAME = ".edgeseg.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "folder") -> Iterator[Path]:
    """Hold the advisory lock of ``folder`` (created if needed) while the block runs.

    One writer per folder: a second edgeseg process that wants the same folder gets a
    one-line error naming the holder's PID instead of silently interleaving its files with
    the first's. The lock is ``flock`` on ``FOLDER/.edgeseg.lock``: the kernel releases it
    when its process dies, so a lock left by a killed process is simply taken over.

    Raises:
        EdgesegError: another live process holds the folder.
    """
    import fcntl

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EdgesegError(
            f"{what} {d} is in use by another edgeseg process (PID {holder}); wait for it to "
            "finish or choose another folder"
        ) from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:  # a full disk: the lock file named, as every write is
            raise OSError(e.errno, e.strerror, str(path)) from None
        # Held: no edgeseg writer is at work here, so temporary files are a killed
        # process's leftovers (a checkpoint write cut short); they go now.
        for stale in d.glob(".*.tmp"):
            if stale.is_file():
                stale.unlink(missing_ok=True)
        yield d
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def work_folder(path: str | os.PathLike[str] | None, prefix: str = "edgeseg-") -> Iterator[Path]:
    """``path`` as a folder (created, kept), or a temporary one removed afterwards."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def text_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table, numbers right-aligned: what the CLI prints and results'
    ``table()`` methods return."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(row):
            numeric = c.replace(".", "", 1).replace(",", "").replace("%", "").isdigit()
            out.append(c.rjust(widths[i]) if numeric and i else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


class VersionedResult(dict):  # type: ignore[type-arg]  # JSON-ready; subclasses type the keys
    """A result that is the JSON-ready dict it always was, with a ``schema`` key naming
    its version, ``to_dict`` / ``from_dict`` and (in each subclass) one ``table()``."""

    #: The version this edgeseg writes and reads, e.g. ``edgeseg.eval/1``.
    SCHEMA: ClassVar[str] = ""
    #: What the result is, for messages.
    KIND: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready)."""
        return dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A result read back from JSON (one written before ``schema`` existed is the
        first version).

        Raises:
            EdgesegError: a schema this edgeseg does not read.
        """
        schema = data.get("schema", cls.SCHEMA)
        if schema != cls.SCHEMA:
            raise EdgesegError(f"{cls.KIND} schema {schema!r}: this edgeseg reads {cls.SCHEMA}")
        return cls({**data, "schema": schema})
