"""engine.budget: a budget parsed once, planned into epochs, costed before it is spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.config import Config
from edgeseg.engine.budget import (
    Budget,
    check_data,
    fit_to_budget,
    fit_to_work,
    parse_budget,
    plan_epochs,
    planned_seconds,
)
from edgeseg.errors import BudgetError, EdgesegError
from tests.synthetic import make_list_dataset


def _recipe(data: Path, model: str = "l3unet") -> Config:
    recipe = Config()
    recipe.model.name = model
    recipe.data.root, recipe.data.preset = str(data), "custom"
    recipe.data.classes, recipe.data.crop_size = ["a", "b", "c"], (32, 48)
    recipe.train.batch_size = 2
    return recipe


def test_parse_budget() -> None:
    assert parse_budget("90s") == Budget("time", 90)
    assert parse_budget("20m") == Budget("time", 1200)
    assert parse_budget("1.5h") == Budget("time", 5400)
    assert parse_budget("2") == Budget("time", 120)  # a bare number is minutes
    assert parse_budget("30 epochs") == parse_budget("30e") == Budget("epochs", 30)
    assert parse_budget("20k images") == Budget("images", 20000)
    for bad in ("", "2x", "m", "-3m", "0s", "2.5 epochs", "3k min", "0 images"):
        with pytest.raises(EdgesegError, match="--budget"):
            parse_budget(bad)


def test_plan_epochs_fits_budget_and_evaluates_about_eight_times() -> None:
    epochs, every = plan_epochs(600, 1.0, 45, 0.1, 100, 1000)
    epoch_s, eval_s = 45 * 1.1, 100 * 0.1 * 1.2
    assert epochs * epoch_s + -(-epochs // every) * eval_s <= 600
    assert 4 <= -(-epochs // every) <= 12  # validations, the last epoch always included
    assert plan_epochs(600, 1.0, 45, 0.1, 100, 3) == (3, 1)  # the recipe's epochs cap it
    assert plan_epochs(1, 10.0, 45, 0.1, 100, 50)[0] == 1  # always at least one epoch


def test_work_budgets_set_equal_epochs_whatever_the_machine(tmp_path: Path) -> None:
    recipe = Config()
    assert fit_to_work(recipe, parse_budget("12 epochs"), 100) == 12
    assert recipe.train.epochs == 12 and recipe.train.max_minutes is None
    assert not recipe.train.replan and recipe.train.eval_every == 2
    recipe.train.batch_size = 8
    assert fit_to_work(recipe, parse_budget("2k images"), 100) == 21  # 96 images an epoch


def test_time_budget_replans_and_refuses_less_than_one_epoch(tmp_path: Path) -> None:
    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    recipe = _recipe(data)
    recipe.train.epochs = 3
    fit_to_budget(recipe, 600.0)
    assert recipe.train.replan and recipe.train.max_epochs == 3 and recipe.train.max_minutes
    with pytest.raises(BudgetError, match="too small to train l3unet one epoch"):
        fit_to_budget(_recipe(data), 1e-3)


def test_planned_seconds_costs_a_work_budget_and_takes_a_time_budget_as_given(
    tmp_path: Path,
) -> None:
    """A budget of work is probed into seconds (more epochs, more time); a time budget
    is its own figure. Nothing is trained, the recipe is not changed."""
    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    recipe = _recipe(data)
    info, val = check_data(recipe)
    assert planned_seconds(recipe, parse_budget("5m"), info, val) == 300.0
    two = planned_seconds(recipe, parse_budget("2 epochs"), info, val)
    twenty = planned_seconds(recipe, parse_budget("20 epochs"), info, val)
    assert 0 < two < twenty
    assert recipe.train.epochs == Config().train.epochs  # the caller's recipe is untouched
