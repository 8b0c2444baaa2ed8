"""Training engine: learning, checkpoints, exact resume after SIGKILL, torchrun with 2 ranks."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeseg.config import Config, load_config
from edgeseg.engine.checkpoint import load_checkpoint
from edgeseg.engine.hooks import TrainHook
from edgeseg.engine.train import Trainer, build_scheduler, train
from edgeseg.errors import CheckpointError, ConfigError, EdgesegError
from tests.synthetic import make_list_dataset

REPO = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))


def _overrides(root: Path, out: Path, **extra: object) -> list[str]:
    items = {
        "data.root": root,
        "data.preset": "custom",
        "data.classes": "[a, b, c]",
        "data.crop_size": "32x48",
        "train.out": out,
        "train.epochs": 3,
        "train.batch_size": 4,
        "train.progress": "false",
        "train.threads": 2,
        "optim.lr": "3e-3",
    }
    items.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in items.items()]


def _cfg(root: Path, out: Path, **extra: object) -> Config:
    return load_config(None, _overrides(root, out, **extra))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_list_dataset(tmp_path / "data", {"train": 8, "val": 4}, size=(40, 56))


def test_training_learns_and_writes_a_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = train(_cfg(data, out, data__class_weighting="enet"))
    assert res.epochs_done == 3 and not res.stopped_by_budget
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < losses[0]
    assert res.best_miou is not None and res.best_miou > 0.4  # 3 colour-coded classes
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "lr", "images_per_s", "val_miou", "val_iou"} <= set(rows[0])
    assert (out / "config.yaml").is_file() and (out / "summary.json").is_file()
    best = load_checkpoint(out / "best.pt")
    assert best["model"]["name"] == "squeeze_unet" and best["model"]["num_classes"] == 3
    assert best["dataset"]["classes"] == ["a", "b", "c"]
    assert best["dataset"]["mean"] and best["input_size"] == [32, 48]
    assert best["edgeseg_version"] and "train_state" not in best
    assert best["metrics"]["miou"] == pytest.approx(res.best_miou)
    assert "optimizer" in load_checkpoint(out / "last.pt")["train_state"]


class _NanGradient(TrainHook):
    """Adds a term worth 0 whose gradient is nan (0 * d sqrt(u)/du at u = 0) at ``steps``."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def extra_loss(self, trainer, x, y, logits):  # type: ignore[no-untyped-def]
        return torch.sqrt((logits * 0).sum()) if trainer.global_step in self.steps else None


def test_a_step_with_a_non_finite_gradient_is_skipped_not_applied(
    data: Path, tmp_path: Path
) -> None:
    # Applied, the clipped nan gradient would make every weight nan and the next loss nan.
    out = tmp_path / "run"
    trainer = Trainer(_cfg(data, out, optim__grad_clip=5.0), hooks=[_NanGradient({1})])
    res = trainer.fit()
    assert res.epochs_done == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps") for r in rows] == [1, None, None]  # per epoch
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)


def test_non_finite_steps_in_a_row_stop_training_as_diverged(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(data, tmp_path / "run"), hooks=[_NanGradient(set(range(99)))])
    # 2 steps per epoch: the fifth bad step in a row is epoch 3's first
    with pytest.raises(
        EdgesegError,
        match=r"training diverged at epoch 3 step 1: gradient norm "
        r"is nan for 5 steps in a row; lower optim.lr",
    ):
        trainer.fit()


def test_existing_run_is_not_overwritten(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(data, out, train__epochs=1))
    before = (out / "last.pt").read_bytes()
    with pytest.raises(EdgesegError, match="already holds a run"):
        train(_cfg(data, out, train__epochs=1))
    assert (out / "last.pt").read_bytes() == before


@pytest.mark.slow
def test_resume_extends_a_finished_run_exactly(data: Path, tmp_path: Path) -> None:
    straight = train(_cfg(data, tmp_path / "a", sched__name="cosine"))
    train(_cfg(data, tmp_path / "b", sched__name="cosine", train__epochs=2))
    # the schedule is set by train.epochs, so a 2-epoch run is not a prefix of a 3-epoch
    # one; a run stopped by its time budget is (next test). Here: resume must refuse junk.
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_cfg(data, tmp_path / "c"), resume=True)
    with pytest.raises(CheckpointError, match=r"trains 'squeeze_unet' .* asks for 'unet'"):
        train(_cfg(data, tmp_path / "b", model__name="unet"), resume=True)
    assert straight.epochs_done == 3


@pytest.mark.slow
def test_budget_stop_then_resume_matches_uninterrupted(data: Path, tmp_path: Path) -> None:
    ref = train(_cfg(data, tmp_path / "ref"))
    part = train(_cfg(data, tmp_path / "run", train__max_minutes=1e-6))
    assert part.stopped_by_budget
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and state["train_state"]["epoch_step"] == 1  # mid-epoch
    done = train(_cfg(data, tmp_path / "run"), resume=True)
    assert not done.stopped_by_budget and done.epochs_done == 3
    _assert_same_run(tmp_path / "ref", tmp_path / "run")
    assert done.best_miou == pytest.approx(ref.best_miou, abs=1e-6)


def _assert_same_run(a: Path, b: Path) -> None:
    """Same weights (1e-6) and the same logged metrics (1e-6) as an uninterrupted run."""
    ca, cb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert ca["step"] == cb["step"]
    for k, v in ca["state_dict"].items():
        assert torch.allclose(v.float(), cb["state_dict"][k].float(), atol=1e-6), k
    ra = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)
        assert x["val_miou"] == pytest.approx(y["val_miou"], abs=1e-6)


def _edgeseg(*args: object) -> list[str]:
    return [sys.executable, "-m", "edgeseg", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    data = make_list_dataset(tmp_path / "data", {"train": 16, "val": 4}, size=(72, 96))
    extra = {"data__crop_size": "64x96", "train__batch_size": 2, "train__save_every_steps": 1}
    train(_cfg(data, tmp_path / "ref", **extra))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _edgeseg("train", *_overrides(data, run, **extra)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed_at = None
    seen = 0.0
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        last = run / "last.pt"
        if last.is_file() and last.stat().st_mtime != seen:
            seen = last.stat().st_mtime
            ck = load_checkpoint(last)
            if ck["epoch"] == 1 and ck["train_state"]["epoch_step"] >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_at = (ck["epoch"], ck["train_state"]["epoch_step"])
                break
        time.sleep(0.02)
    assert killed_at is not None, proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 1 and 0 < state["train_state"]["epoch_step"] < 8  # mid-epoch
    done = subprocess.run(
        _edgeseg("train", "--resume", run), env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "3 epoch(s)" in done.stdout
    _assert_same_run(tmp_path / "ref", run)


@pytest.mark.slow
def test_torchrun_two_processes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "edgeseg",
        "train",
        *_overrides(data, out, train__epochs=2, train__batch_size=2, train__threads=1),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_done"] == 2
    a, b = summary["rank_weight_checksums"]
    assert a == b  # identical weights on both ranks
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["val_miou"] is not None  # evaluated across ranks
    assert load_checkpoint(out / "last.pt")["step"] == 2 * 8 // (2 * 2)
    # one line per epoch from rank 0's logger only (rank 1 writes nothing)
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_bf16_and_every_scheduler_run(data: Path, tmp_path: Path) -> None:
    for sched in ("constant", "onecycle", "plateau"):
        res = train(
            _cfg(
                data,
                tmp_path / sched,
                sched__name=sched,
                train__epochs=1,
                train__bf16="true" if sched == "plateau" else "false",
            )
        )
        assert res.epochs_done == 1 and res.history[0]["train_loss"] > 0


def test_scheduler_shapes() -> None:
    cfg = load_config(None, ["data.root=/d", "train.epochs=10", "sched.warmup_epochs=1"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, per_iter = build_scheduler(opt, cfg, steps_per_epoch=10)
    assert per_iter
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warm-up
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.05  # poly decay to ~0
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))


def test_bad_batch_size_and_preset(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size=64 .* more than the 8"):
        train(_cfg(data, tmp_path / "x", train__batch_size=64))
    with pytest.raises(ConfigError, match=r"data\.preset=custom needs data\.classes"):
        train(load_config(None, [f"data.root={data}", "data.preset=custom"]))


def _planning_trainer(data: Path, out: Path, **extra: object) -> Trainer:
    t = Trainer(_cfg(data, out, train__max_minutes=10, train__replan="true", **extra))
    t.setup()
    t._prepare_run()
    return t


def test_replan_fits_the_time_left_within_the_cap(data: Path, tmp_path: Path) -> None:
    t = _planning_trainer(data, tmp_path / "run", train__epochs=3, train__max_epochs=40)
    t.budget_s, t.t_start = 600.0, time.perf_counter()  # 600 s left, by construction
    t.replan(1, {"epoch_seconds": 20.0})  # ~29 more epochs fit: the plan grows
    assert 25 <= t.cfg.train.epochs <= 30
    assert t.scheduler.lr_lambdas[0].total == t.cfg.train.epochs * t.steps_per_epoch
    t.replan(1, {"epoch_seconds": 1.0})  # 599 more would fit: the cap holds
    assert t.cfg.train.epochs == 40
    t.log.rows.clear()
    t.replan(2, {"epoch_seconds": 1e4})  # nothing more fits: the schedule ends here
    assert t.cfg.train.epochs == 2
    assert t.scheduler.lr_lambdas[0].total == 2 * t.steps_per_epoch


def test_replan_uses_the_median_so_one_slow_epoch_does_not_set_the_plan(
    data: Path, tmp_path: Path
) -> None:
    t = _planning_trainer(data, tmp_path / "run", train__epochs=3, train__max_epochs=100)
    t.budget_s, t.t_start = 100.0, time.perf_counter()
    t.log.rows[:] = [{"epoch_seconds": 1.0}, {"epoch_seconds": 1.0}]
    t.replan(3, {"epoch_seconds": 50.0})  # another process slowed one epoch 50x
    assert t.cfg.train.epochs > 50


def test_a_plan_shrunk_by_slow_epochs_grows_back_to_the_recipe_length(
    data: Path, tmp_path: Path
) -> None:
    # No train.max_epochs: the cap is the recipe's 40 epochs, not the shrunk plan's length
    t = _planning_trainer(data, tmp_path / "run", train__epochs=40)
    t.budget_s, t.t_start = 600.0, time.perf_counter()
    t.log.rows[:] = [{"epoch_seconds": 200.0}]  # another process slowed the first epochs
    t.replan(2, {"epoch_seconds": 200.0})
    assert t.cfg.train.epochs == 4  # 2 done + 2 more fit at 200 s
    t.log.rows[:] = [{"epoch_seconds": 1.0}] * 4  # the machine is free again
    t.replan(3, {"epoch_seconds": 1.0})
    assert t.cfg.train.epochs == 40
    assert t.scheduler.lr_lambdas[0].total == 40 * t.steps_per_epoch


def test_replanned_length_survives_a_resume(data: Path, tmp_path: Path) -> None:
    res = train(
        _cfg(
            data,
            tmp_path / "run",
            train__epochs=2,
            train__max_epochs=6,
            train__max_minutes=30,
            train__replan="true",
        )
    )
    assert res.epochs_done == 6  # the plan grew to the cap: 30 minutes fit far more
    ts = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert ts["epochs"] == 6
    assert ts["scheduler"]["lr_lambdas"][0]["total"] == 6 * 2  # 8 images / batch 4


def test_the_replan_cap_survives_a_resume_whose_config_holds_a_shrunk_plan(
    data: Path, tmp_path: Path
) -> None:
    # A resume rewrites config.yaml with the re-planned train.epochs; the cap stays the
    # first invocation's recipe length, read back from last.pt
    out = tmp_path / "run"
    train(_cfg(data, out, train__epochs=1))
    ckpt = load_checkpoint(out / "last.pt")
    ckpt["train_state"]["epochs"], ckpt["train_state"]["epoch_cap"] = 2, 40
    torch.save(ckpt, out / "last.pt")
    t = Trainer(
        _cfg(data, out, train__epochs=2, train__max_minutes=10, train__replan="true"), resume=True
    )
    t.resume(t.setup())
    assert t.cfg.train.epochs == 2 and t.epoch_cap == 40


def test_resume_with_more_epochs_re_plans_the_schedule(data: Path, tmp_path: Path) -> None:
    # A run resumed with train.epochs=N anneals over N epochs, not the saved length.
    train(_cfg(data, tmp_path / "run", train__epochs=1))
    res = train(_cfg(data, tmp_path / "run", train__epochs=3), resume=True)
    assert res.epochs_done == 3
    ts = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert ts["scheduler"]["lr_lambdas"][0]["total"] == 3 * 2  # 8 images / batch 4
    assert ts["optimizer"]["param_groups"][0]["lr"] == 0.0  # poly ended at its new end


def test_replan_needs_a_budget_and_a_replannable_schedule(data: Path, tmp_path: Path) -> None:
    for extra, msg in [
        ({"train__replan": "true"}, "needs train.max_minutes"),
        ({"train__replan": "true", "train__max_minutes": 1, "sched__name": "onecycle"}, "onecycle"),
        ({"train__max_epochs": 2}, "max_epochs"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            train(_cfg(data, tmp_path / "x", **extra))
