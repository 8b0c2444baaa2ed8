"""The training features of the frontier recipe: auxiliary heads, OHEM, EMA, distillation.

Each test fails without its feature: the boosters must learn and stay out of best.pt,
OHEM must average only the hard pixels, best.pt must hold the weights' average, and the
teacher must add its term to the loss (and be refused when it does not fit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from edgeseg.cli import main
from edgeseg.config import Config, load_config
from edgeseg.engine import extras
from edgeseg.engine.checkpoint import load_checkpoint, load_model
from edgeseg.engine.train import Trainer, step_seconds, train
from edgeseg.errors import ConfigError
from edgeseg.losses import SegmentationLoss, distillation_loss
from tests.synthetic import make_list_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_list_dataset(tmp_path / "data", {"train": 8, "val": 4}, size=(64, 64))


def _cfg(root: Path, out: Path, model: str = "l3unet", **extra: object) -> Config:
    items = {
        "data.root": root,
        "data.preset": "custom",
        "data.classes": "[a, b, c]",
        "data.crop_size": "64x64",
        "train.out": out,
        "train.epochs": 1,
        "train.batch_size": 4,
        "train.progress": "false",
        "train.threads": 2,
        "model.name": model,
        "optim.lr": "3e-3",
        "train.tensorboard": "false",
    }
    items.update({k.replace("__", "."): v for k, v in extra.items()})
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def test_boosters_learn_in_training_and_stay_out_of_the_checkpoint(
    data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(data, tmp_path / "run", "bisenetv2", train__aux_weight=0.4)
    trainer = Trainer(cfg)
    trainer.setup()
    heads = trainer.train_net.heads
    assert heads is not None and set(heads) == {"s2", "s3", "s4", "s5"}
    before = [p.detach().clone() for p in heads.parameters()]
    trainer._prepare_run()
    trainer.train_epoch(0)
    assert all(not torch.equal(a, b) for a, b in zip(before, heads.parameters(), strict=True))
    trainer.save_last(1, 0, {})
    trainer.save_best(1, {})
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert not any("heads" in k or k.startswith("aux") for k in best["state_dict"])
    assert "aux_heads" in load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    model, _ = load_model(tmp_path / "run" / "best.pt")  # the plain network
    assert model(torch.randn(1, 3, 40, 56)).shape == (1, 3, 40, 56)


def test_aux_weight_on_a_model_without_heads_is_a_config_error(data: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="has no auxiliary heads"):
        train(_cfg(data, tmp_path / "run", "l3unet", train__aux_weight=0.4))
    assert not (tmp_path / "run").exists()


def test_ohem_averages_only_the_hard_pixels() -> None:
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0] = torch.tensor([4.0, 4.0, -4.0, 0.0])  # class 0 very sure, sure-wrong, even
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none").flatten()
    hard = per_pixel[per_pixel > -torch.log(torch.tensor(0.7))]
    ohem = SegmentationLoss("ohem", ohem_thresh=0.7, ohem_min_kept=0.25)(logits, target)
    assert torch.isclose(ohem, hard.mean()) and len(hard) == 2
    assert ohem > SegmentationLoss("ce")(logits, target)  # easy pixels no longer dilute it
    # at least the min_kept share is used, the hardest first
    easy = torch.full((1, 2, 1, 4), 0.0)
    easy[0, 0] = 10.0
    kept = SegmentationLoss("ohem", ohem_min_kept=0.5)(easy, target)
    easy_px = torch.nn.functional.cross_entropy(easy, target, reduction="none").flatten()
    assert torch.isclose(kept, easy_px.topk(2).values.mean())


def test_ema_is_validated_and_saved_as_best(data: Path, tmp_path: Path) -> None:
    cfg = _cfg(data, tmp_path / "run", train__ema=0.5)
    train(cfg)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    avg = last["train_state"]["hooks"]["EMAHook"]["ema"]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == last["epoch"] == 1
    for k, v in best["state_dict"].items():
        assert torch.equal(v, avg[f"module.{k}"]), k
    assert any(
        not torch.equal(v, last["state_dict"][k])
        for k, v in best["state_dict"].items()
        if v.is_floating_point()
    )
    # last.pt as a model (eval, export, shipping) is the average too, as validated.
    final = load_model(tmp_path / "run" / "last.pt")[0].state_dict()
    assert all(torch.equal(v, final[k]) for k, v in best["state_dict"].items())


def test_ema_warms_up_and_forgets_the_initial_weights() -> None:
    # A fixed 0.999 would keep 0.999 ** 300 = 74 % of the random start after 300 steps.
    assert extras.ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert extras.ema_decay(0.999, 10**6) == 0.999
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    hook = extras.EMAHook(0.999)
    hook.attach(SimpleNamespace(model=model))
    start = model[0].weight.detach().clone()
    hook.after_step(SimpleNamespace(model=model))  # the first update copies the weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # trained: every weight moved by 1
        model[1].num_batches_tracked.fill_(300)
    for _ in range(300):
        hook.after_step(SimpleNamespace(model=model))
    avg = hook.eval_model(model)
    assert torch.allclose(avg[0].weight, start + 1.0, atol=1e-3)
    assert int(avg[1].num_batches_tracked) == 300  # integers are copied, not averaged


def test_distillation_adds_a_pixelwise_kl_and_checks_the_teacher(
    data: Path, tmp_path: Path
) -> None:
    s = torch.randn(2, 3, 5, 7, requires_grad=True)
    assert distillation_loss(s.detach(), s.detach()).abs() < 1e-6
    loss = distillation_loss(s, torch.randn(2, 3, 5, 7), temperature=2.0)
    loss.backward()
    assert loss > 0 and s.grad is not None
    teacher = train(_cfg(data, tmp_path / "teacher")).run_dir / "best.pt"
    trainer = Trainer(_cfg(data, tmp_path / "student", "segfast", train__teacher=teacher))
    trainer.setup()
    (hook,) = [h for h in trainer.hooks if type(h).__name__ == "DistillHook"]
    x, y = next(iter(torch.utils.data.DataLoader(trainer.train_ds, batch_size=2)))
    extra = hook.extra_loss(trainer, x, y, torch.zeros(2, 3, *y.shape[-2:]))
    assert extra > 0
    other = make_list_dataset(tmp_path / "d5", {"train": 8, "val": 4}, size=(64, 64), num_classes=5)
    bad = _cfg(
        other, tmp_path / "s2", "segfast", train__teacher=teacher, data__classes="[a, b, c, d, e]"
    )
    with pytest.raises(ConfigError, match="predicts 3 classes, the data has 5"):
        Trainer(bad).setup()


def test_resume_restores_the_average_and_the_boosters(data: Path, tmp_path: Path) -> None:
    # A run stopped by its budget mid-epoch and resumed equals one that never stopped.
    kw = {"train__ema": 0.9, "train__aux_weight": 0.4, "data__crop_size": "32x32"}
    train(_cfg(data, tmp_path / "a", "bisenetv2", **kw))
    assert train(
        _cfg(data, tmp_path / "b", "bisenetv2", train__max_minutes=1e-6, **kw)
    ).stopped_by_budget
    train(_cfg(data, tmp_path / "b", "bisenetv2", **kw), resume=True)
    a, b = (load_checkpoint(tmp_path / r / "last.pt")["train_state"] for r in "ab")
    pairs = [
        (a["hooks"]["EMAHook"]["ema"], b["hooks"]["EMAHook"]["ema"]),
        (a["aux_heads"], b["aux_heads"]),
    ]
    for x, y in pairs:
        for k, v in x.items():
            assert torch.allclose(v.float(), y[k].float(), atol=1e-6), k


def test_misused_features_are_one_line_exit_2_from_the_cli(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(root: Path, model: str, classes: str, *extra: str) -> str:
        argv = [
            "train",
            "--model",
            model,
            "--data",
            str(root),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "data.preset=custom",
            f"data.classes={classes}",
            "data.crop_size=64x64",
            "train.progress=false",
            *extra,
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()  # refused before any work
        return err

    assert "has no auxiliary heads" in run(data, "l3unet", "[a, b, c]", "train.aux_weight=0.4")
    teacher = train(_cfg(data, tmp_path / "teacher")).run_dir / "best.pt"
    other = make_list_dataset(tmp_path / "d5", {"train": 8, "val": 4}, size=(64, 64), num_classes=5)
    err = run(other, "segfast", "[a, b, c, d, e]", f"train.teacher={teacher}")
    assert "predicts 3 classes, the data has 5" in err and str(teacher) in err


def test_a_time_budget_pays_for_every_feature_of_the_recipe(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget probe times the recipe's own step: the teacher's forward, every booster's
    loss and the EMA update run in it, so a costly feature is planned fewer epochs."""

    teacher = train(_cfg(data, tmp_path / "teacher")).run_dir / "best.pt"
    calls = {"teacher": 0, "loss": 0, "ema": 0}

    def count(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*a: Any, **k: Any) -> Any:
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(
        extras.DistillHook, "extra_loss", count("teacher", extras.DistillHook.extra_loss)
    )
    monkeypatch.setattr(extras.EMAHook, "after_step", count("ema", extras.EMAHook.after_step))
    monkeypatch.setattr(SegmentationLoss, "forward", count("loss", SegmentationLoss.forward))
    cfg = _cfg(
        data,
        tmp_path / "s",
        "bisenetv2",
        train__teacher=teacher,
        train__ema=0.9,
        train__aux_weight=0.4,
    )
    seconds = step_seconds(cfg, (64, 64), warmup=1, timed=2)  # its value is not checked: load
    assert isinstance(seconds, float)
    assert calls == {"teacher": 3, "loss": 3 * 5, "ema": 3}  # 3 steps; main + 4 boosters
    assert not (tmp_path / "s").exists()  # nothing written


def test_plugins_come_from_entry_points() -> None:
    from edgeseg.engine.hooks import plugin_modules

    assert {"edgeseg.compress", "edgeseg.engine.extras"} <= set(plugin_modules())
