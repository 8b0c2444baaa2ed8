"""Errors that edgeseg reports to a user as one line (the CLI exits with status 2)."""

from __future__ import annotations


class EdgesegError(Exception):
    """A user-facing error: bad argument, unreadable file, incompatible checkpoint.

    The CLI prints ``edgeseg: error: <message>`` and exits with status 2 for these;
    anything else is a bug and keeps its traceback.
    """


class UnknownModelError(EdgesegError, ValueError):
    """A model name that is not in the registry."""


class DataError(EdgesegError):
    """A dataset problem: a missing, corrupt or inconsistent file (the message names it)."""


class CheckpointError(EdgesegError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class ConfigError(EdgesegError, ValueError):
    """A configuration with an unknown key, a wrong type or an invalid value."""
