"""The one "fastest within the accuracy budget" rule."""

from __future__ import annotations

from edgeseg.measure.choice import fastest_within

MS = {"fp32": 30.0, "int8": 10.0, "bf16": 20.0}


def test_the_fastest_within_the_budget_wins() -> None:
    miou = {"fp32": 0.70, "int8": 0.68, "bf16": 0.699}
    assert fastest_within(MS, miou, 0.70, 0.01) == "bf16"  # int8 loses 2 points
    assert fastest_within(MS, miou, 0.70, 0.03) == "int8"


def test_unscored_candidates_and_no_reference_compete_on_speed() -> None:
    assert fastest_within(MS, {"int8": None}, 0.70, 0.0) == "int8"
    assert fastest_within(MS, {"int8": 0.1}, None, 0.0) == "int8"


def test_none_within_the_budget_is_none() -> None:
    assert fastest_within(MS, {k: 0.1 for k in MS}, 0.70, 0.01) is None
    assert fastest_within({}, {}, None, 0.01) is None
