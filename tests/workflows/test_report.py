"""The comparison report: a verdict in words, flags on under-trained models, legends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeseg.workflows.report import _pareto_figure, training_flags, verdict, write_report


def _entry(
    name: str,
    miou: float,
    ms: float,
    *,
    epochs: int = 40,
    planned: int = 40,
    cut: bool = False,
    rising: bool = False,
) -> dict[str, Any]:
    curve = [0.2 + 0.5 * min(1.0, e / 10) for e in range(1, epochs + 1)]
    if rising:
        curve = [0.2 + 0.01 * e for e in range(1, epochs + 1)]
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_miou": v, "epoch_seconds": 1.0}
        for e, v in enumerate(curve, start=1)
    ]
    return {
        "name": name,
        "status": "done",
        "stages": {},
        "metrics": {"miou": miou, "pixel_acc": 0.9, "mean_acc": 0.8, "iou": {}},
        "profile": {"params": 1e6, "flops": 1e9, "size_bytes": 4e6, "latency_ms": {"median": ms}},
        "bench": {"best": "ort", "backends": {"ort": {"latency_ms": {"median": ms}}}},
        "train": {
            "epochs_done": epochs,
            "epochs": planned,
            "images": epochs * 100,
            "seconds": epochs * 1.0,
            "stopped_by_budget": cut,
        },
        "history": history,
    }


def _results(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "order": [e["name"] for e in entries],
        "models": {e["name"]: e for e in entries},
        "classes": ["sky", "road"],
        "palette": [[128, 128, 128], [128, 64, 128]],
        "size": [96, 128],
        "config": {"budget": "60 epochs", "backends": ["ort"]},
        "machine": {"cpu": "x", "threads": 2},
    }


def test_verdict_names_the_front_and_the_dominated() -> None:
    res = _results(
        _entry("fast", 0.70, 5.0),
        _entry("mid", 0.75, 9.0),
        _entry("best", 0.80, 20.0),
        _entry("worse", 0.60, 30.0),
    )
    text = " ".join(verdict(res))
    assert text.startswith("Pick best (0.800 mIoU, 20.0 ms with ort) for the best accuracy")
    assert "Pick fast (0.700 mIoU, 5.0 ms with ort) when latency comes first" in text
    assert "In between" in text and "mid (0.750" in text
    assert "Dominated (another model is both faster and more accurate): worse." in text
    assert "Do not read" not in text  # every model trained to the end


def test_cut_short_and_rising_models_are_flagged() -> None:
    assert training_flags(_entry("a", 0.5, 1, epochs=3, planned=8, cut=True))[0] == (
        "schedule cut: 3 of 8 epochs"
    )
    assert training_flags(_entry("b", 0.5, 1, epochs=4, planned=4))[0] == "only 4 epochs"
    flags = training_flags(_entry("c", 0.5, 1, epochs=40, planned=40, rising=True))
    assert len(flags) == 1 and flags[0].startswith("still improving (+0.1")
    assert training_flags(_entry("d", 0.5, 1)) == []
    res = _results(_entry("a", 0.5, 1.0, epochs=3, planned=8, cut=True), _entry("d", 0.6, 2.0))
    text = " ".join(verdict(res))
    assert "Do not read these scores" in text and "a (schedule cut: 3 of 8 epochs" in text


def test_report_opens_with_the_verdict_and_flags_the_cut_model(tmp_path: Path) -> None:
    res = _results(_entry("cut", 0.5, 1.0, epochs=3, planned=8, cut=True), _entry("ok", 0.6, 2.0))
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert md.splitlines()[2].startswith("**Verdict.** Pick ok")
    assert "| cut |" in md and "schedule cut: 3 of 8 epochs" in md and "| complete |" in md
    page = (tmp_path / "report.html").read_text()
    assert "<p id='verdict'>" in page and "data-curves='cut ok'" in page
    assert "`" not in page.split("<body>")[1].split("<figure")[0]  # no raw Markdown
    assert json.dumps(res)  # the results stay plain data


def test_names_of_near_points_do_not_overlap() -> None:
    # The 10-minute frontier: LR-ASPP Large and BiSeNet V2 at 8.9 ms (0.522, 0.527 mIoU),
    # Fast-SCNN, DDRNet and EdgeSegNet within 0.3 ms; their names were written over each
    # other and over the markers.
    pts = {
        "fastscnn": (4.9, 0.571),
        "ddrnet23_slim": (5.1, 0.580),
        "edgesegnet": (5.05, 0.600),
        "lraspp_mobilenetv3_large": (8.87, 0.522),
        "bisenetv2": (8.9, 0.527),
        "cgnet": (12.8, 0.477),
        "essnet": (8.8, 0.253),
    }
    res = _results(*(_entry(n, miou, ms) for n, (ms, miou) in pts.items()))
    fig = _pareto_figure(res, list(res["models"].values()))
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    names = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(names) == set(pts)
    boxes = list(names.values())
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    # the higher of two near points has its name above the other's
    assert names["bisenetv2"].y0 > names["lraspp_mobilenetv3_large"].y0


def test_latency_axis_is_labelled_in_plain_ms_however_narrow() -> None:
    # 5.5 to 9 ms holds no 1-2-5 tick: without the unit steps the axis had no label.
    res = _results(_entry("a", 0.5, 5.5), _entry("b", 0.6, 9.0))
    fig = _pareto_figure(res, list(res["models"].values()))
    fig.canvas.draw()
    (ax,) = fig.axes
    shown = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)]
    shown = [t for t in shown if t]
    assert len(shown) >= 2 and all(t.replace(".", "").isdigit() for t in shown), shown


def test_int8_sensitivity_table_names_what_stayed_fp32() -> None:
    from edgeseg.deploy.mixed import PartSensitivity, Sensitivity
    from edgeseg.workflows.report import int8_tables

    parts = [PartSensitivity("enc.s0", 2, 0.44, 0.72), PartSensitivity("dec", 4, 0.72, 0.60)]
    sens = Sensitivity(0.72, 0.60, parts, 32)
    mixed = {
        "sensitivity": sens.to_dict(),
        "kept_fp32": ["enc.s0"],
        "int8_miou": 0.60,
        "fp32_miou": 0.72,
        "miou": 0.719,
    }
    a = {"name": "a", "status": "done", "bench": {"quantization": {"ort-int8": {"mixed": mixed}}}}
    b = {"name": "b", "status": "done", "bench": {"quantization": {}}}
    results = {"models": {"a": a, "b": b}}
    tables = int8_tables(results)
    assert len(tables) == 1
    ((title, (header, rows)),) = tables.items()
    assert "int8 sensitivity of a" in title and header[-1] == "deployed"
    assert rows[0] == ["enc.s0", "2", "-28.00", "+12.00", "fp32"] and rows[1][-1] == "int8"


def test_int8_sensitivity_figure_draws_the_most_sensitive_modules_first() -> None:
    from edgeseg.deploy.mixed import PartSensitivity, Sensitivity
    from edgeseg.workflows.report import sensitivity_figure

    parts = [PartSensitivity(f"m{i}", 1, 0.72 - 0.01 * i, 0.60 + 0.005 * i) for i in range(20)]
    mixed = {
        "sensitivity": Sensitivity(0.72, 0.60, parts, 32).to_dict(),
        "kept_fp32": ["m19"],
        "int8_miou": 0.60,
        "fp32_miou": 0.72,
        "miou": 0.716,
    }
    assert sensitivity_figure({}) is None
    fig = sensitivity_figure({"net": mixed}, top=5)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["m19", "m18", "m17", "m16", "m15"]  # the costliest first, 5 of 20
    assert "deployed 0.716 (1 module(s) in fp32)" in ax.get_title()
    lost = ax.patches[:5]  # then the 5 bars won back in fp32
    assert lost[0].get_hatch() == "//" and not any(b.get_hatch() for b in lost[1:])
    assert lost[0].get_width() < 0 < ax.patches[5].get_width()


def test_compare_results_print_the_verdict_the_cost_table_and_failures() -> None:
    from edgeseg.errors import EdgesegError
    from edgeseg.workflows.compare import RESULTS_SCHEMA, CompareResults

    res = _results(_entry("fast", 0.70, 5.0), _entry("best", 0.80, 20.0))
    res["models"]["broken"] = {"name": "broken", "status": "failed", "error": "no data"}
    res["order"].append("broken")
    with pytest.raises(EdgesegError, match="not an edgeseg comparison"):
        CompareResults.from_dict(res)
    typed = CompareResults.from_dict({**res, "schema": RESULTS_SCHEMA})
    assert typed.failed == {"broken": "no data"}
    lines = typed.table().splitlines()
    assert lines[0].startswith("Verdict: Pick best (0.800 mIoU")
    assert lines[1].split()[:2] == ["model", "mIoU"] and lines[-1] == "broken: failed (no data)"
