"""edgeseg compare: overrides, an end-to-end run, resume, a model over its budget, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.cli import main
from edgeseg.config import Config
from edgeseg.errors import ConfigError, DivergedError, EdgesegError
from edgeseg.models._registry import _REGISTRY
from edgeseg.workflows.compare import (
    CompareConfig,
    compare,
    load_compare_config,
    recipe_of,
)
from tests.synthetic import make_list_dataset


def test_compare_config_yaml_strict(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("models: [segfast]\nbudget: 5m\nrecipe:\n  optim: {lr: 0.01}\n")
    cfg = load_compare_config(p, ["threads=1", "recipe.train.batch_size=2"])
    assert cfg.models == ["segfast"] and cfg.budget == "5m" and cfg.threads == 1
    assert isinstance(cfg.recipe, Config) and cfg.recipe.optim.lr == 0.01
    assert cfg.recipe.train.batch_size == 2
    p.write_text("models: [segfast]\nbugdet: 5m\n")
    with pytest.raises(ConfigError, match="unknown key bugdet"):
        load_compare_config(p)


def test_per_model_overrides_change_only_that_models_recipe(tmp_path: Path) -> None:
    cfg = load_compare_config(
        None,
        [
            "models=[segfast, cgnet]",
            "recipe.train.bf16=true",
            'overrides={"cgnet": ["train.bf16=false", "optim.lr=0.01"]}',
        ],
    )
    assert recipe_of(cfg, "segfast").train.bf16 and recipe_of(cfg, "segfast").optim.lr != 0.01
    cg = recipe_of(cfg, "cgnet")
    assert not cg.train.bf16 and cg.optim.lr == 0.01
    assert cfg.recipe.train.bf16  # the shared recipe is not changed
    bad = load_compare_config(None, ["models=[cgnet]", 'overrides={"cgnet": ["train.bfl6=false"]}'])
    with pytest.raises(ConfigError, match=r"overrides\.cgnet: unknown key train\.bfl6"):
        recipe_of(bad, "cgnet")
    with pytest.raises(EdgesegError, match="overrides: 'dabnet' is not one of the models"):
        compare(load_compare_config(None, ["models=[cgnet]", 'overrides={"dabnet": []}']))


class TinyNet(nn.Module):
    """A network outside the zoo that returns a dict at half resolution (torchvision-like)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def _cfg(data: Path, out: Path, models: list[str]) -> CompareConfig:
    cfg = load_compare_config(
        None,
        [
            f"out={out}",
            "budget=3 epochs",  # work, not wall time: the run is the same under load
            "threads=2",
            "backends=[eager, ort]",
            "bench_iterations=2",
            "bench_repeats=1",
            "bench_images=2",
            "preview_images=2",
            f"recipe.data.root={data}",
            "recipe.data.preset=custom",
            "recipe.data.classes=[a, b, c]",
            "recipe.data.crop_size=32x48",
            "recipe.train.batch_size=4",
            "recipe.train.progress=false",
            "recipe.train.tensorboard=false",
            "recipe.train.epochs=3",
        ],
    )
    cfg.models = models
    return cfg


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("compare")
    data = make_list_dataset(base / "data", {"train": 8, "val": 3}, size=(40, 56))
    out = base / "out"
    try:
        res = compare(_cfg(data, out, ["l3unet", "tinynet"]), extra_models={"tinynet": TinyNet})
    finally:
        _REGISTRY.pop("tinynet", None)
    return data, out, res


@pytest.mark.slow
def test_compare_end_to_end(compared: tuple[Path, Path, dict]) -> None:
    _, out, res = compared
    assert json.loads((out / "results.json").read_text()) == res
    assert res["schema"] == "edgeseg.compare/1" and res["order"] == ["l3unet", "tinynet"]
    for name in ("l3unet", "tinynet"):
        e = res["models"][name]
        assert e["status"] == "done", e.get("error")
        assert set(e["stages"]) == {"train", "evaluate", "profile", "bench", "preview"}
        assert 0 <= e["metrics"]["miou"] <= 1 and set(e["metrics"]["iou"]) == {"a", "b", "c"}
        assert e["train"]["epochs_done"] >= 1 and e["history"][0]["epoch"] == 1
        tr = e["train"]  # what it got, stated
        assert tr["images"] == tr["epochs_done"] * 8 and tr["seconds"] > 0
        assert tr["budget"] == "3 epochs" and isinstance(tr["schedule_finished"], bool)
        assert e["profile"]["params"] > 0 and e["profile"]["stages"]
        assert set(e["bench"]["backends"]) == {"eager", "ort"}
        assert e["bench"]["best"] in ("eager", "ort")
        assert "miou" in e["bench"]["backends"]["ort"]
        assert (out / "artefacts" / name / "fp32.onnx").is_file()  # the deployable winner
    for f in (
        "report.md",
        "report.html",
        "pareto.png",
        "curves.png",
        "timing.png",
        "predictions.png",
    ):
        assert (out / f).stat().st_size > 0, f
    md = (out / "report.md").read_text()
    assert "| l3unet |" in md and "| tinynet |" in md and "![" in md
    assert "IoU per class" in md and "Latency per backend" in md


@pytest.mark.slow
def test_compare_resumes_and_keeps_finished_models(
    compared: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    data, out, first = compared
    out2 = tmp_path / "out"
    shutil.copytree(out, out2)
    # Pretend the run stopped after l3unet's evaluation.
    res = json.loads((out2 / "results.json").read_text())
    e = res["models"]["l3unet"]
    e["status"] = "running"
    for s in ("profile", "bench", "preview"):
        e["stages"].pop(s)
    (out2 / "results.json").write_text(json.dumps(res))
    cfg = _cfg(data, out2, ["l3unet"])
    again = compare(cfg, report=False)
    e2 = again["models"]["l3unet"]
    assert e2["status"] == "done"
    # Training and evaluation were read back, not redone; the rest ran again.
    assert e2["stages"]["train"] == first["models"]["l3unet"]["stages"]["train"]
    assert e2["metrics"] == first["models"]["l3unet"]["metrics"]
    assert (
        e2["stages"]["bench"]["seconds"] != first["models"]["l3unet"]["stages"]["bench"]["seconds"]
    )
    assert again["models"]["tinynet"]["status"] == "done"  # kept although not listed now


@pytest.mark.slow
def test_compare_checkpoint_model_is_not_trained(
    compared: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    data, out, _ = compared
    ckpt = out / "runs" / "l3unet" / "best.pt"
    cfg = _cfg(data, tmp_path / "o", [f"l3unet={ckpt}"])
    cfg.backends = ["eager"]
    res = compare(cfg, report=False)
    e = res["models"]["l3unet"]
    assert e["source"] == "checkpoint" and "train" not in e["stages"]
    assert e["metrics"]["miou"] is not None


def _bad_compare_input(data: Path, out: Path, tmp_path: Path, capsys) -> None:
    """Every case: exit 2, one line naming the culprit, before any work."""
    cases = [
        (["--models", "segfsat", "--data", str(data)], "unknown model 'segfsat'"),
        (["--models", "segfast", "--data", str(tmp_path / "nope")], "not a readable folder"),
        (["--models", "segfast", "--data", str(data), "--budget", "ten"], "--budget 'ten'"),
        (["--models", "segfast,segfast", "--data", str(data)], "listed twice"),
    ]
    for argv, msg in cases:
        code = main(
            [
                "compare",
                *argv,
                "--out",
                str(out),
                "recipe.data.preset=custom",
                "recipe.data.classes=[a, b, c]",
            ]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and msg in err and len(err.splitlines()) == 1, err


def test_compare_cli_bad_input_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    _bad_compare_input(make_list_dataset(tmp_path / "d"), out, tmp_path, capsys)
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_compare_cli_bad_input_one_line_exit_2(
    compared: tuple[Path, Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out, _ = compared
    before = (out / "results.json").read_bytes()
    _bad_compare_input(data, out, tmp_path, capsys)
    assert (out / "results.json").read_bytes() == before  # finished models kept


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    compared: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    """Open report.html in Chromium: every figure decodes, tables are there, screenshot taken."""
    _, out, _ = compared
    flags = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    url = (out / "report.html").resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert 'data-images="ok 4"' in dom, dom[:300]
    assert dom.count("<table>") >= 4 and "l3unet" in dom
    verdict = dom.split('id="verdict"')[1].split("</p>")[0]
    assert "Pick " in verdict and ("l3unet" in verdict or "tinynet" in verdict)
    assert 'data-curves="l3unet tinynet"' in dom  # every model's curve is drawn
    legend = dom.split('class="legend"')[1].split("</ul>")[0]
    assert all(f"</span>{c}</li>" in legend for c in ("a", "b", "c"))
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2400", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    colours = img.resize((64, 120)).getcolors(64 * 120)
    assert colours is not None and len(colours) > 20  # plots, not a blank page


def test_compare_with_a_model_too_big_for_its_budget_still_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """One model's budget cannot fit an epoch: it is recorded as failed with the reason,
    the other trains, and the report is written and flags it. The planned duration of the
    trainings and of the benchmark's remaining rounds is stated before each is spent."""
    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    out = tmp_path / "o"
    code = main(
        [
            "compare",
            "--models",
            "l3unet,segfast",
            "--data",
            str(data),
            "--budget",
            "1 epochs",
            "--out",
            str(out),
            "--backends",
            "eager",
            "budgets={l3unet: 0.01s}",
            "recipe.data.preset=custom",
            "recipe.data.classes=[a, b, c]",
            "recipe.data.crop_size=32x48",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1 and "l3unet: failed (budget 0.01s:" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["models"]["l3unet"]["status"] == "failed"
    assert "too small to train l3unet one epoch" in res["models"]["l3unet"]["error"]
    assert res["models"]["segfast"]["status"] == "done"
    report = (out / "report.md").read_text()
    assert "Not compared (see Failed): l3unet" in report and "only 1 epoch " in report
    logged = caplog.text
    plan = logged.index("planned: 2 models to train, about ")
    assert "of training on " in logged and "(plus evaluation and benchmark" in logged
    assert plan < logged.index("[2/2] segfast: train")
    assert "planned: 1 more round of 1 backend on " in logged


def test_shipped_weights_are_a_checkpoint_by_name() -> None:
    """``--models segfast=segfast_camvid`` (docs/compare.md's own example): the name of
    shipped weights is as good as a path; anything else is one line listing them."""
    from edgeseg.pretrained import pretrained_path
    from edgeseg.workflows.compare import _check_models

    assert _check_models(["segfast=segfast_camvid"]) == [
        ("segfast", str(pretrained_path("segfast_camvid")))
    ]
    with pytest.raises(EdgesegError, match=r"no such checkpoint.*segfast_camvid"):
        _check_models(["segfast=segfast_kitti"])


@pytest.mark.slow
def test_a_model_that_diverges_in_bf16_is_trained_again_in_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The typed DivergedError of a bf16 run makes compare re-plan and re-train the model
    in fp32, the bf16 run kept beside it; in fp32 the model's result is whatever it is."""
    import edgeseg.workflows.compare as compare_mod

    real_train, seen = compare_mod.train, []

    def bf16_diverges(recipe, resume=False):
        seen.append(recipe.train.bf16)
        if recipe.train.bf16:
            Path(recipe.train.out).mkdir(parents=True)  # a run dir with its partial state
            raise DivergedError("training diverged at epoch 1 step 2: loss is nan")
        return real_train(recipe, resume=resume)

    monkeypatch.setattr(compare_mod, "train", bf16_diverges)
    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    cfg = _cfg(data, tmp_path / "o", ["l3unet"])
    cfg.budget, cfg.backends = "1 epochs", ["eager"]
    cfg.recipe.train.bf16 = True
    res = compare(cfg)
    entry = res["models"]["l3unet"]
    assert seen == [True, False] and entry["status"] == "done"
    assert "loss is nan" in entry["bf16_diverged"] and entry["train"]["bf16"] is False
    assert (tmp_path / "o" / "runs" / "l3unet.bf16-nan").is_dir()


def test_precision_auto_needs_plan_ahead(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plan_ahead"):
        load_compare_config(None, ["precision=auto"])
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        load_compare_config(None, ["precision=fp8", "plan_ahead=true"])


@pytest.mark.slow
def test_plan_ahead_fixes_epochs_before_training_and_rebench_measures_again(
    tmp_path: Path,
) -> None:
    """A time budget planned ahead becomes epochs (and a precision) before any training,
    kept in plan.json and results.json; a rebench re-measures a finished model only."""
    data = make_list_dataset(tmp_path / "d", {"train": 8, "val": 3}, size=(40, 56))
    out = tmp_path / "o"
    cfg = _cfg(data, out, ["l3unet"])
    cfg.budget, cfg.backends, cfg.plan_ahead, cfg.precision = "20s", ["eager"], True, "auto"
    cfg.recipe.train.bf16 = True
    res = compare(cfg)
    plan = json.loads((out / "plan.json").read_text())
    assert res["plan"] == plan and plan["budget"] == "20 s"
    epochs = int(plan["budgets"]["l3unet"].split()[0])
    assert set(plan["probe"]["l3unet"]["precision_step_s"]) == {"fp32", "bf16"}
    entry = res["models"]["l3unet"]
    assert entry["status"] == "done" and entry["train"]["epochs"] == epochs
    fp32 = plan["overrides"].get("l3unet") == ["train.bf16=false"]
    assert entry["train"]["bf16"] is not fp32
    first = entry["stages"]["bench"]["seconds"]
    cfg.rebench = True
    again = compare(cfg)["models"]["l3unet"]
    assert again["status"] == "done" and again["train"] == entry["train"]  # not retrained
    assert again["stages"]["bench"]["seconds"] != first  # measured again
