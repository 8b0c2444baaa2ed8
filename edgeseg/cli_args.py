"""Command-line flags generated from an API function's signature and docstring.

A flag's default is the parameter's default and its help the parameter's line of the
function's Google-style ``Args:`` section, so the CLI states nothing the API does not:
``api_flag(parser, compress_checkpoint, "ratio", type=float)`` adds ``--ratio`` with
``compress_checkpoint``'s default (0.5) and description.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Callable
from typing import Any

__all__ = ["api_flag", "param_docs"]

_ROLE = re.compile(r":\w+:`~?([^`]*)`")  # Sphinx roles: :class:`X` -> X
# "name: text", "name (type): text" or "a, b, c: text" (one description for several)
_ARG = re.compile(r"^(\s+)(\*{0,2}\w+(?:, \w+)*)(?: \([^)]*\))?: (.*)$")


def param_docs(func: Callable[..., Any]) -> dict[str, str]:
    """``{parameter: description}`` from ``func``'s ``Args:`` section (continuation lines
    joined, markup of inline code removed)."""
    lines = (inspect.getdoc(func) or "").splitlines()
    docs: dict[str, str] = {}
    inside, indent, name, names = False, 0, "", [""]
    for line in lines:
        if line.strip() == "Args:":
            inside = True
            continue
        if inside and line.strip() and not line.startswith(" "):  # the next section
            break
        m = _ARG.match(line) if inside else None
        if m and (not indent or len(m.group(1)) == indent):
            indent, names = len(m.group(1)), m.group(2).split(", ")
            name = names[0]
            for n in names:
                docs[n] = m.group(3).strip()
        elif inside and name and line.strip():
            for n in names:
                docs[n] += " " + line.strip()
    return {k: _ROLE.sub(r"\1", v).replace("``", "") for k, v in docs.items()}


def _shown(default: Any) -> str:
    if isinstance(default, (tuple, list)):
        if len(default) == 2 and all(isinstance(v, int) for v in default):
            return f"{default[0]}x{default[1]}"  # a size, as --size takes it
        return ",".join(map(str, default)) if default else "''"
    return str(default)


def api_flag(
    parser: argparse.ArgumentParser,
    func: Callable[..., Any],
    param: str,
    *,
    flag: str | None = None,
    **kwargs: Any,
) -> None:
    """Add ``--PARAM`` (``flag``) with ``func``'s default for ``param`` and its docstring
    line as the help; ``kwargs`` go to ``add_argument`` (``type``, ``choices``, ...).

    Raises:
        KeyError: ``func`` has no such parameter or does not document it (a CLI built
            from the API must not drift from it).
    """
    p = inspect.signature(func).parameters[param]
    help_text = param_docs(func)[param]
    if p.default is not inspect.Parameter.empty and "default" not in kwargs:
        kwargs["default"] = p.default
        if p.default is not None and not isinstance(p.default, bool):
            help_text = f"{help_text.rstrip('.')}; default {_shown(p.default)}"
    parser.add_argument(flag or "--" + param.replace("_", "-"), help=help_text, **kwargs)
