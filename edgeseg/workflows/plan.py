"""A comparison planned ahead: every model's time budget probed into epochs before any
training, and each model's faster numeric setting (bfloat16 autocast or fp32) chosen.

A budget in minutes is fair only on the machine it was probed on and in the state it was
in: planned ahead, the comparison then trains a fixed amount of *work* per model, the same
whatever else the machine does later, and a resumed comparison trains to the same plan
(kept in ``OUT/plan.json``; a model added later is probed alone). The probes are
:func:`edgeseg.engine.budget.fit_to_budget`'s, the one planner.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from edgeseg.config import Config
from edgeseg.cpu import cpu_name
from edgeseg.engine.budget import fit_to_budget, parse_budget
from edgeseg.engine.train import step_seconds
from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.utils import atomic_write_json

__all__ = ["BF16_MARGIN", "PLAN_FILE", "PRECISIONS", "faster_precision", "plan_ahead"]

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
#: ``recipe``: each model trains in the recipe's ``train.bf16``; ``auto``: in the faster
#: of bf16 and fp32, probed per model (only when the recipe asks for bf16).
PRECISIONS = ("recipe", "auto")
#: bf16 only where its step takes under 90 % of fp32's: it rounds, so a tie goes to fp32.
BF16_MARGIN = 0.9


def faster_precision(recipe: Config, name: str) -> tuple[bool, dict[str, float | None]]:
    """Whether ``recipe`` trains faster in bf16 than in fp32 here, and both step times.

    bf16 halves a dense network's step on a CPU with bf16 units, but depthwise and
    grouped convolutions have no fast bf16 kernels and run slower than in fp32, so one
    setting for every model would hand some of them fewer epochs for nothing. A bf16
    probe that fails (a loss that overflows) keeps fp32.
    """
    times: dict[str, float | None] = {}
    for bf16 in (False, True):
        r = copy.deepcopy(recipe)
        r.train.bf16 = bf16
        try:
            times["bf16" if bf16 else "fp32"] = step_seconds(r)
        except EdgesegError as e:
            log.warning("%s: bf16 probe failed (%s); fp32", name, e)
            times["bf16"] = None
    bf16_s, fp32_s = times["bf16"], times["fp32"]
    return bf16_s is not None and bf16_s < BF16_MARGIN * float(fp32_s or 0), times


def _load(path: Path, budget: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if plan.get("budget") != budget:
        raise ConfigError(f"{path}: planned for {plan.get('budget')}, not {budget}")
    return plan


def plan_ahead(
    models: list[str], budget: str, recipe: Config, threads: int, out: str | Path, precision: str
) -> dict[str, Any]:
    """Each model's budget as epochs (and, with ``precision="auto"``, its numeric setting),
    probed here before any training and kept in ``OUT/plan.json``.

    Returns:
        ``{"budget", "cpu", "budgets": {model: "N epochs"}, "overrides": {model:
        [KEY=VALUE]}, "probe": {model: {step_s, steps_per_epoch, precision_step_s}}}``;
        a budget of epochs or images is already work: ``budgets`` repeats it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {PRECISIONS}")
    parsed = parse_budget(budget)
    if parsed.kind != "time":
        return {"budget": str(parsed), "budgets": dict.fromkeys(models, budget), "overrides": {}}
    path = Path(out) / PLAN_FILE
    plan = _load(path, str(parsed)) or {"budget": str(parsed), "cpu": cpu_name()}
    for key in ("budgets", "probe", "overrides"):
        plan.setdefault(key, {})
    for name in [m for m in models if m not in plan["budgets"]]:
        r = copy.deepcopy(recipe)
        r.model.name, r.train.threads = name, threads
        times: dict[str, float | None] = {}
        if precision == "auto" and r.train.bf16:
            keep_bf16, times = faster_precision(r, name)
            if not keep_bf16:
                plan["overrides"][name] = ["train.bf16=false"]
                r.train.bf16 = False
        probe = fit_to_budget(r, parsed.value, name=name)
        plan["budgets"][name] = f"{r.train.epochs} epochs"
        plan["probe"][name] = {
            "step_s": probe["step_s"],
            "steps_per_epoch": probe["steps_per_epoch"],
            "precision_step_s": times,
        }
        log.info(
            "%s: %.2f s per step in %s -> %d epochs",
            name,
            probe["step_s"],
            "bf16" if r.train.bf16 else "fp32",
            r.train.epochs,
        )
        atomic_write_json(path, plan)  # after each probe: an interrupted plan resumes
    return plan
