"""The one error a user sees as one line (``edgeseg`` and ``edgeseg-run`` exit with 2)."""

from __future__ import annotations


class EdgesegError(Exception):
    """A user-facing error: bad argument, unreadable file, incompatible model or bundle.

    The command-line tools print ``<tool>: error: <message>`` and exit with status 2 for
    these; anything else is a bug and keeps its traceback. ``edgeseg.errors`` re-exports
    this class, so one ``except`` catches errors of both packages.
    """
