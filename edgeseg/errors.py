"""Errors that edgeseg reports to a user as one line (the CLI exits with status 2)."""

from __future__ import annotations


class EdgesegError(Exception):
    """A user-facing error: bad argument, unreadable file, incompatible checkpoint.

    The CLI prints ``edgeseg: error: <message>`` and exits with status 2 for these;
    anything else is a bug and keeps its traceback.
    """


class UnknownModelError(EdgesegError, ValueError):
    """A model name that is not in the registry."""
