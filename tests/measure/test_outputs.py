"""Output forms measured side by side (edgeseg.measure.outputs): every form of one file
timed and scored, and the rule that picks one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.defaults import OUTPUTS
from edgeseg.deploy.export import export_onnx
from edgeseg.measure.outputs import OutputRow, choose_output, measure_outputs
from edgeseg.models import create_model


def _rows(**spec: tuple[float, float | None]) -> dict[str, OutputRow]:
    return {f.replace("_", "-"): OutputRow(f, f, ms, miou) for f, (ms, miou) in spec.items()}


def test_the_fastest_form_within_the_budget_is_chosen() -> None:
    rows = _rows(logits=(10, 0.70), labels=(9, 0.70), labels_half=(7, 0.697), labels_low=(6, 0.64))
    assert choose_output(rows, 0.70, 0.01) == "labels-half"  # labels-low is over the budget
    assert choose_output(rows, 0.70, 0.1) == "labels-low"
    assert choose_output(rows, 0.70, 0.0) == "labels"


def test_without_scores_only_the_exact_forms_compete() -> None:
    rows = _rows(logits=(10, None), labels=(11, None), labels_low=(5, None))
    assert choose_output(rows, None, 0.01) == "logits"  # labels is slower, low is unscored
    rows = _rows(logits=(10, 0.5), labels=(8, 0.5))
    assert choose_output(rows, None, 0.01) == "labels"


@pytest.mark.slow
def test_every_form_of_a_file_is_timed_and_scored(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("segfast", num_classes=4).eval()
    meta = {"classes": list("abcd"), "mean": [0.5] * 3, "std": [0.25] * 3}
    export_onnx(model, tmp_path / "m.onnx", input_size=(48, 64), metadata=meta)
    images = torch.randn(3, 3, 48, 64)
    with torch.inference_mode():
        labels = model(images).argmax(1).numpy()
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    scoring = (images, labels, 4, 255)
    rows = measure_outputs(tmp_path / "m.onnx", "ort", rgb, scoring=scoring, threads=1, rounds=2)
    assert list(rows) == list(OUTPUTS)
    assert rows["logits"].miou == rows["labels"].miou == 1.0  # the same arg-max
    assert all(isinstance(r.median_ms, float) and 0 <= r.miou <= 1 for r in rows.values())
    assert {r.applied for r in rows.values()} <= set(OUTPUTS)
    assert (tmp_path / "m.onnx").exists() and len(list(tmp_path.iterdir())) == 1  # untouched
