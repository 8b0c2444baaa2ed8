"""An ONNX file's ``metadata_props`` read straight from its protobuf, with neither the
``onnx`` package nor an inference session.

Only the top level of ``ModelProto`` is walked (its graph, however large, is skipped by
its length), so reading the card of a 100 MB network costs a scan of a few fields, and a
network whose weights sit in an external data file needs neither the file nor shape
inference. ``ModelProto.metadata_props`` is field 14, each a ``StringStringEntryProto``
(``key`` = 1, ``value`` = 2).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from edgeseg_runtime.errors import EdgesegError

__all__ = ["read_metadata"]

_METADATA_PROPS = 14  # ModelProto.metadata_props
_KEY, _VALUE = 1, 2  # StringStringEntryProto


def _varint(buf: mmap.mmap | bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, end)`` of each length-delimited field in ``buf[start:end]``
    (the other wire types are skipped)."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield number, i, i + n
            i += n
        else:
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("truncated message")


def read_metadata(path: str | Path) -> dict[str, str]:
    """``{key: value}`` of an ONNX file's ``metadata_props``.

    Raises:
        EdgesegError: the file is missing, empty or not an ONNX protobuf (one line).
    """
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"ONNX file not found: {p}")
    if p.stat().st_size == 0:
        raise EdgesegError(f"{p} is empty, not an ONNX model")
    props: dict[str, str] = {}
    try:
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for number, a, b in _fields(buf, 0, len(buf)):
                if number != _METADATA_PROPS:
                    continue
                entry = {n: bytes(buf[s:e]).decode("utf-8") for n, s, e in _fields(buf, a, b)}
                props[entry.get(_KEY, "")] = entry.get(_VALUE, "")
    except (ValueError, IndexError, UnicodeDecodeError, OSError) as e:
        raise EdgesegError(f"{p} is not a readable ONNX model ({type(e).__name__})") from None
    return props
