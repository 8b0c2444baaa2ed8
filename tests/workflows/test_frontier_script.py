"""benchmarks/frontier.py's bookkeeping: a model whose bf16 run diverged is planned again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "frontier.py"


def _frontier():
    spec = importlib.util.spec_from_file_location("frontier", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_run_diverged_in_bf16_is_planned_again_in_fp32_and_the_run_kept(tmp_path: Path) -> None:
    plan = {
        "budget": "1200 s",
        "budgets": {"a": "9 epochs", "b": "5 epochs"},
        "probe": {"a": {}, "b": {}},
        "overrides": {},
    }
    err = "training diverged at epoch 2 step 21: loss is nan for 5 steps in a row"
    res = {
        "order": ["a", "b"],
        "models": {
            "a": {"status": "failed", "error": err, "stages": {"x": 1}},
            "b": {"status": "done", "metrics": {"miou": 0.5}},
        },
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "results.json").write_text(json.dumps(res))
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "last.pt").write_bytes(b"x")
    (tmp_path / "runs" / "a.bf16-nan").mkdir()  # left by an earlier divergence
    _frontier()._bf16_diverged(tmp_path)
    plan = json.loads((tmp_path / "plan.json").read_text())
    res = json.loads((tmp_path / "results.json").read_text())
    assert plan["overrides"] == {"a": ["train.bf16=false"]}
    assert "a" not in plan["budgets"] and plan["budgets"]["b"] == "5 epochs"  # a: probed again
    assert res["models"]["a"] == {"status": "pending", "stages": {}}
    assert res["models"]["b"]["status"] == "done"
    assert (tmp_path / "runs" / "a.bf16-nan" / "last.pt").is_file()  # the failed run is kept
    # failing again in fp32: the error stands, nothing is planned again
    res["models"]["a"] = {"status": "failed", "error": "loss is nan at epoch 1 step 3"}
    (tmp_path / "results.json").write_text(json.dumps(res))
    _frontier()._bf16_diverged(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["models"]["a"]["status"] == "failed"
