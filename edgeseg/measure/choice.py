"""The one rule every choice between measured variants follows: the fastest whose accuracy
is within a budget of the reference.

Backends (``bench``'s ``best``, the bundle's engine) and output forms (the bundle's
``output``) are chosen by :func:`fastest_within`.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fastest_within"]


def fastest_within(
    ms: Mapping[str, float],
    miou: Mapping[str, float | None],
    reference: float | None,
    budget: float,
) -> str | None:
    """The fastest of ``ms``'s candidates losing at most ``budget`` mIoU against
    ``reference``.

    Args:
        ms: each candidate's latency (the median, ms).
        miou: each candidate's mIoU; a candidate without one competes on speed alone.
        reference: the mIoU of the reference (the fp32 network); None: speed alone.
        budget: mIoU that may be lost (0.01: one point).

    Returns:
        The candidate's name, or None when none is within the budget.
    """
    ok = [
        name
        for name in ms
        if reference is None or miou.get(name) is None or miou[name] >= reference - budget  # type: ignore[operator]
    ]
    return min(ok, key=lambda name: ms[name]) if ok else None
