"""Errors that edgeseg reports to a user as one line (the CLI exits with status 2)."""

from __future__ import annotations

# One base class for both packages: the torch-free runtime raises it, edgeseg too, and
# each command-line boundary turns it into one line and exit status 2.
from edgeseg_runtime.errors import EdgesegError

__all__ = [
    "BudgetError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergedError",
    "EdgesegError",
    "UnknownModelError",
]


class UnknownModelError(EdgesegError, ValueError):
    """A model name that is not in the registry."""


class DataError(EdgesegError):
    """A dataset problem: a missing, corrupt or inconsistent file (the message names it)."""


class CheckpointError(EdgesegError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class ConfigError(EdgesegError, ValueError):
    """A configuration with an unknown key, a wrong type or an invalid value."""


class BudgetError(EdgesegError):
    """A training budget that cannot do what it is asked (not even one epoch fits).

    A comparison stops on it instead of recording the model as failed: every later model
    would get the same budget.
    """


class DivergedError(EdgesegError):
    """Training stopped: its loss or gradients were not finite for several steps in a row.

    A comparison that trained the model in bfloat16 trains it again in fp32 (8 bits of
    mantissa overflow where fp32's 23 do not); in fp32 it is the model's result.
    """
