"""The training loop: resumable to the step, distributed with torchrun, CPU-friendly.

Resumption is exact: the shuffling order of an epoch depends only on ``(seed, epoch)``,
augmentation only on ``(seed, epoch, sample)``, and ``last.pt`` holds the model, optimiser,
scheduler, every rank's RNG states, the best score and the position inside an unfinished
epoch. A run killed at any moment and resumed therefore takes the same steps as one that
never stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from edgeseg.config import Config, config_to_dict
from edgeseg.cpu import cpu_name
from edgeseg.data import DatasetInfo, SegmentationDataset, build_dataset, data_info
from edgeseg.data.stats import class_weights
from edgeseg.data.transforms import eval_transform, train_transform
from edgeseg.engine.checkpoint import (
    build_model,
    load_checkpoint,
    load_weights,
    make_checkpoint,
    save_checkpoint,
)
from edgeseg.engine.distributed import ResumableSampler, init_distributed
from edgeseg.engine.evaluate import confusion_over
from edgeseg.engine.extras import AuxNet, aux_heads_of
from edgeseg.engine.hooks import TrainHook, checkpoint_adapter, hooks_for
from edgeseg.engine.run_log import RunLog, progress_bar, progress_write
from edgeseg.errors import CheckpointError, ConfigError, DataError, DivergedError, EdgesegError
from edgeseg.losses import SegmentationLoss
from edgeseg.metrics import segmentation_metrics
from edgeseg.models import create_model, load_pretrained_encoder
from edgeseg.models.footprint import check_forward
from edgeseg.utils import (
    atomic_write_json,
    atomic_write_text,
    finish_time,
    folder_lock,
    format_duration,
)

__all__ = [
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "dataset_info",
    "step_seconds",
    "train",
]

log = logging.getLogger(__name__)
MAX_BAD_STEPS = 5  # non-finite steps in a row after which training stops as diverged


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run produced."""

    run_dir: Path  # the run directory
    epochs_done: int  # completed epochs
    best_miou: float | None  # best validation mIoU (None without validation)
    best_epoch: int | None  # epoch (1-based) of the best mIoU
    history: list[dict[str, Any]] = field(default_factory=list)  # log.jsonl rows
    stopped_by_budget: bool = False  # train.max_minutes ran out before the last epoch
    train_seconds: float = 0.0  # wall time spent in this invocation


#: The run's duration is announced after this many timed steps (the first is untimed).
PLAN_AFTER_STEPS = 3


def dataset_info(cfg: Config) -> DatasetInfo:
    """The :class:`DatasetInfo` a config describes: its custom classes, the data folder's
    class file, or its preset (:func:`edgeseg.data.data_info`)."""
    d = cfg.data
    try:
        return data_info(d.root, d.preset, d.classes, d.ignore_index)
    except DataError as e:
        raise ConfigError(str(e)) from None
    except EdgesegError as e:
        raise ConfigError(f"data.preset: {e}") from None


def encoder_of(model: nn.Module) -> nn.Module | None:
    """The pretrained-capable encoder of an encoder-decoder model (``model.encoder``, or
    ``model.model.encoder`` inside the trainer's :class:`AuxNet`), else None."""
    inner = getattr(model, "model", model)
    encoder = getattr(inner, "encoder", None)
    return encoder if isinstance(encoder, nn.Module) else None


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim``; norm and bias parameters get no weight decay; the
    parameters of a pretrained encoder get ``lr * optim.encoder_lr_mult``."""
    o = cfg.optim
    encoder = encoder_of(model)
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    # (encoder?, no decay?) -> parameters; empty groups are dropped
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault((id(p) in in_encoder, p.ndim <= 1), []).append(p)
    groups = [
        {
            "params": params,
            "weight_decay": 0.0 if no_decay else o.weight_decay,
            "lr": o.lr * (o.encoder_lr_mult if enc else 1.0),
        }
        for (enc, no_decay), params in sorted(buckets.items())
    ]
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)


class ScheduleFactor:
    """Learning-rate factor per iteration of poly, cosine and constant schedules.

    A callable object, not a closure: ``LambdaLR`` saves an object's attributes with its
    state, so a schedule whose length :meth:`Trainer.replan` changed resumes as it was.
    """

    def __init__(self, name: str, power: float, floor: float, total: int, warmup: int) -> None:
        self.name, self.power, self.floor = name, power, floor
        self.total, self.warmup = total, warmup  # iterations: whole run, linear warm-up

    def __call__(self, it: int) -> float:
        if self.warmup and it < self.warmup:
            return (it + 1) / self.warmup
        t = min((it - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        if self.name == "poly":
            return (1.0 - t) ** self.power
        if self.name == "cosine":
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0  # constant


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int
) -> tuple[Any, bool]:
    """The scheduler of ``cfg.sched`` and whether it steps per iteration (else per epoch).

    poly, cosine and constant are ``LambdaLR`` over iterations with an optional linear
    warm-up; onecycle is ``OneCycleLR``; plateau is ``ReduceLROnPlateau`` on val mIoU.
    """
    s = cfg.sched
    total = steps_per_epoch * cfg.train.epochs
    sched: Any
    if s.name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total
        )
        return sched, True
    if s.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=s.factor, patience=s.patience, min_lr=s.min_lr
        )
        return sched, False
    warmup = round(s.warmup_epochs * steps_per_epoch)
    factor = ScheduleFactor(s.name, s.power, s.min_lr / cfg.optim.lr, total, warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True


def _rng_state() -> dict[str, Any]:
    # numpy's state holds an ndarray: stored as a list so that weights_only loading works.
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return {
        "python": random.getstate(),
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build_datasets(
    cfg: Config, info: DatasetInfo
) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    d = cfg.data
    aug = train_transform(
        d.crop_size,
        ignore_index=info.ignore_index,
        scale=d.scale,
        hflip=d.hflip,
        translate=d.translate,
        color_jitter=d.color_jitter,
    )
    train_ds = build_dataset(
        d.root, d.train_split, info, aug, in_memory=d.in_memory, seed=cfg.train.seed
    )
    val_ds = None
    if d.val_split:
        val_ds = build_dataset(
            d.root, d.val_split, info, eval_transform(d.eval_size), in_memory=d.in_memory
        )
    return train_ds, val_ds


def _check_memory(cfg: Config, model: nn.Module) -> None:
    """Refuse a crop, batch or validation size this machine cannot hold, before any data
    is read (:mod:`edgeseg.models.footprint`)."""
    c = int(getattr(model, "edgeseg_config", {}).get("in_channels", 3))
    if cfg.data.crop_size:
        shape = (cfg.train.batch_size, c, *cfg.data.crop_size)
        check_forward(model, shape, True, "lower data.crop_size or train.batch_size")
    if cfg.data.eval_size:
        check_forward(model, (1, c, *cfg.data.eval_size), False, "lower data.eval_size")


def _build_model(cfg: Config, info: DatasetInfo) -> nn.Module:
    """The recipe's model: random, its encoder's pretrained weights, or ``train.init``'s."""
    model = create_model(cfg.model.name, num_classes=info.num_classes, **cfg.model.kwargs)
    if cfg.model.encoder_weights:
        try:
            record = load_pretrained_encoder(model, cfg.model.encoder_weights)
        except EdgesegError as e:
            raise ConfigError(str(e)) from None
        log.info("encoder weights: %s", record.get("package") or record.get("file"))
    freezes = cfg.train.freeze_encoder_epochs or cfg.train.freeze_encoder_bn
    if freezes and encoder_of(model) is None:
        raise ConfigError(f"train.freeze_encoder_*: model '{cfg.model.name}' has no encoder")
    if cfg.train.init:
        _init_from(model, cfg.train.init)
    return model


def _init_from(model: nn.Module, path: str) -> None:
    """Start from a checkpoint's weights (fine-tuning); a pruned one narrows the layers."""
    init = load_checkpoint(path)
    name = getattr(model, "edgeseg_config", {}).get("name")
    if init["model"]["name"] != name:
        raise ConfigError(
            f"train.init {path} holds '{init['model']['name']}', the recipe trains '{name}'"
        )
    if init["model"].get("pruned"):
        build_model(init)  # checks an adapter exists before touching the model
        adapter = checkpoint_adapter("pruned")
        assert adapter is not None
        adapter(model, init)
    load_weights(model, init)
    log.info("initialised from %s", path)


def _check_resume(ckpt: dict[str, Any], cfg: Config) -> None:
    where = ckpt["path"]
    if "train_state" not in ckpt:
        raise CheckpointError(f"{where} has no training state (only last.pt can resume)")
    want = ckpt["model"]
    if want["name"] != cfg.model.name or dict(want.get("kwargs") or {}) != cfg.model.kwargs:
        raise CheckpointError(
            f"{where} trains '{want['name']}' {want.get('kwargs') or {}}, the config asks for "
            f"'{cfg.model.name}' {cfg.model.kwargs}"
        )


class Trainer:
    """One training run: :meth:`setup`, :meth:`resume`, then :meth:`train_epoch` and
    :meth:`validate` per epoch, :meth:`save_last` / :meth:`save_best`, :meth:`finish`.

    :meth:`fit` runs them all. Under torchrun the model is wrapped in
    DistributedDataParallel, the training split is sharded by a distributed sampler,
    validation metrics are reduced over ranks, and only rank 0 writes. Plug-ins (the
    recipe's ``compress`` section) join as :class:`~edgeseg.engine.hooks.TrainHook`s.

    Args:
        config: the recipe (see :mod:`edgeseg.config`).
        resume: continue from ``RUN/last.pt``.
        hooks: training hooks; ``None`` takes those the recipe asks for
            (:func:`~edgeseg.engine.hooks.hooks_for`).
    """

    def __init__(
        self, config: Config, *, resume: bool = False, hooks: list[TrainHook] | None = None
    ) -> None:
        self.t_start = time.perf_counter()
        self.cfg = config
        self.resuming = resume
        # What train.replan may plan up to: the recipe's length, fixed here because a
        # re-plan (or a resume restoring one) lowers train.epochs and must not lower the cap
        self.epoch_cap = config.train.max_epochs or config.train.epochs
        self.hooks = hooks_for(config) if hooks is None else list(hooks)
        self.run_dir = Path(config.train.out)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.global_step = 0
        self.start_epoch = self.start_step = 0
        self.best, self.best_epoch = -1.0, cast(int | None, None)
        self.epoch_loss_sum, self.epoch_images = 0.0, 0
        self.skipped_steps = self.bad_in_a_row = 0  # steps skipped for non-finite numbers
        self.stopped = False

    # ------------------------------------------------------------------ setup

    def _check_run_dir(self) -> dict[str, Any] | None:
        """The checkpoint to resume from; refuses to train over an existing run."""
        if self.resuming:
            if not self.last_path.is_file():
                raise CheckpointError(f"nothing to resume: {self.last_path} does not exist")
            ckpt = load_checkpoint(self.last_path)
            _check_resume(ckpt, self.cfg)
            return ckpt
        if self.last_path.is_file() or self.best_path.is_file():
            raise EdgesegError(
                f"{self.run_dir} already holds a run (last.pt or best.pt); resume it with "
                "--resume or choose another train.out"
            )
        return None

    def setup(self) -> dict[str, Any] | None:
        """Data, loss, model, optimizer, sampler, schedule, hooks. Returns the checkpoint
        to resume from (or ``None``); nothing is written yet."""
        self.ctx = init_distributed()
        ckpt = self._check_run_dir()
        cfg = self.cfg
        cfg.validate()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        _seed_everything(cfg.train.seed)
        self.info = dataset_info(cfg)
        model = _build_model(cfg, self.info)
        _check_memory(cfg, model)
        # A pretrained encoder's normalisation is the data's: saved with every checkpoint.
        if hasattr(model, "input_mean"):
            mean, std = getattr(model, "input_mean"), getattr(model, "input_std")  # noqa: B009
            self.info = replace(self.info, mean=mean, std=std)
        self.train_ds, self.val_ds = _build_datasets(cfg, self.info)
        bs, world = cfg.train.batch_size, self.ctx.world_size
        if len(self.train_ds) < bs * world:
            raise ConfigError(
                f"train.batch_size={bs} x {world} process(es) is more than the "
                f"{len(self.train_ds)} training images"
            )
        self.criterion = SegmentationLoss(
            cfg.train.loss,
            weight=class_weights(self.train_ds, cfg.data.class_weighting),
            ignore_index=self.info.ignore_index,
            label_smoothing=cfg.train.label_smoothing,
            ohem_thresh=cfg.train.ohem_thresh,
            ohem_min_kept=cfg.train.ohem_min_kept,
        )
        self.memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        self.model = model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        # The model with its training-only auxiliary heads (none unless train.aux_weight).
        heads = aux_heads_of(self.model, cfg.train.aux_weight)
        net = AuxNet(self.model, heads)
        self.train_net = net.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer = build_optimizer(self.train_net, cfg)
        self.sampler = ResumableSampler(
            self.train_ds,
            num_replicas=world,
            rank=self.ctx.rank,
            shuffle=True,
            seed=cfg.train.seed,
            drop_last=True,
        )
        self.steps_per_epoch = self.sampler.num_samples // bs
        self.scheduler, self.per_iter = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        for hook in self.hooks:
            hook.attach(self)
        return ckpt

    def resume(self, ckpt: dict[str, Any]) -> None:
        """Restore model, optimizer, scheduler, counters, best score and RNG states."""
        load_weights(self.model, ckpt)
        ts = ckpt["train_state"]
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scheduler.load_state_dict(ts["scheduler"])
        self.start_epoch, self.start_step = int(ckpt["epoch"]), int(ts["epoch_step"])
        self.global_step = int(ckpt["step"])
        if self.cfg.train.replan and "epochs" in ts:  # the re-planned length, not the recipe's
            self.cfg.train.epochs = int(ts["epochs"])
            # the run's config.yaml now says the plan; the cap is the first invocation's
            self.epoch_cap = self.cfg.train.max_epochs or int(ts.get("epoch_cap", self.epoch_cap))
        # The schedule's length is the config's: a resume with train.epochs=N re-plans the
        # rest of the schedule for N epochs (the saved factor would keep the old length).
        self._set_schedule_length(self.cfg.train.epochs)
        self.best, self.best_epoch = float(ts["best_score"]), ts["best_epoch"]
        self.epoch_loss_sum = float(ts["epoch_loss_sum"])
        self.epoch_images = int(ts["epoch_images"])
        rngs = ts["rng"]
        if len(rngs) != self.ctx.world_size:
            log.warning(
                "resuming %d ranks from %d: RNG streams restart", self.ctx.world_size, len(rngs)
            )
        _set_rng_state(rngs[self.ctx.rank % len(rngs)])
        if self.train_net.heads is not None:
            self.train_net.heads.load_state_dict(ts["aux_heads"])
        for hook in self.hooks:
            hook.load_state_dict(ts.get("hooks", {}).get(type(hook).__name__, {}))
        log.info(
            "resumed %s at epoch %d step %d", self.last_path, self.start_epoch, self.start_step
        )

    def _build_net(self) -> None:
        """The network that steps (DDP, compile) and the autocast context of its forward."""
        cfg = self.cfg
        self.net: nn.Module = self.train_net
        if self.ctx.enabled:
            self.net = DistributedDataParallel(self.train_net)
        if cfg.train.compile:
            # Crops have one size and the last partial batch is dropped, so the graph
            # compiles once (about a minute); evaluation runs the eager model.
            self.net = torch.compile(self.net)  # type: ignore[assignment]  # a Module still
        self.amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.train.bf16 else nullcontext()

    def _prepare_run(self) -> None:
        """The network that steps, the log, the run directory, the loader."""
        cfg = self.cfg
        self._build_net()
        self.log = RunLog(
            self.run_dir, self.ctx.is_main, cfg.train.tensorboard, keep_epochs=self.start_epoch
        )
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg)))
        self.loader = DataLoader(
            self.train_ds,
            batch_size=cfg.train.batch_size,
            sampler=self.sampler,
            num_workers=cfg.data.num_workers,
            drop_last=True,
            # its own generator keeps the global RNG intact
            generator=torch.Generator().manual_seed(cfg.train.seed),
            persistent_workers=False,
        )
        self.budget_s = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None

    # ------------------------------------------------------------------ the loop

    def over_budget(self) -> bool:
        """Whether ``train.max_minutes`` has run out (every rank agrees)."""
        over = self.budget_s is not None and time.perf_counter() - self.t_start > self.budget_s
        if self.ctx.enabled:
            flag = torch.tensor([1.0 if over else 0.0])
            over = bool(self.ctx.all_reduce_sum(flag).item() > 0)
        return over

    def _step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> torch.Tensor | None:
        """One optimizer step on a batch ``x (B, C, H, W)``, ``y (B, H, W)``; returns the
        loss, or None when the step was skipped for a non-finite loss or gradient."""
        with self.amp:
            logits, aux = self.net(x)
        logits = logits.float()
        loss = self.criterion(logits, y)
        for a in aux:  # deep supervision: each head scored against the same labels
            loss = loss + self.cfg.train.aux_weight * self.criterion(a.float(), y)
        for hook in self.hooks:
            extra = hook.extra_loss(self, x, y, logits)
            loss = loss if extra is None else loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        # Backward even for a non-finite loss: under DDP every rank must join the gradient
        # all-reduce, whose result (and so the norm, and the skip) is then the same on all.
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = nn.utils.get_total_norm([p.grad for p in params])
        bad = None
        if not torch.isfinite(norm):
            bad = (
                f"loss is {loss.item()}"
                if not torch.isfinite(loss)
                else f"gradient norm is {norm.item()}"
            )
        if bad is None:
            if self.cfg.optim.grad_clip:
                nn.utils.clip_grads_with_norm_(params, self.cfg.optim.grad_clip, norm)
            self.optimizer.step()
            self.bad_in_a_row = 0
        else:
            self._skip_step(bad, epoch, step)
        if self.per_iter:  # a skipped step still spends its place in the schedule
            self.scheduler.step()
        self.global_step += 1
        for hook in self.hooks:
            hook.after_step(self)
        return None if bad else loss.detach()

    def _skip_step(self, why: str, epoch: int, step: int) -> None:
        """Skip an update whose loss or gradient is not finite, as ``torch.amp.GradScaler``
        skips fp16 steps: bfloat16 keeps fp32's range but not its precision, and a rare
        step overflows; applied (clipping multiplies inf by 0), it would make the weights
        nan for good. :data:`MAX_BAD_STEPS` in a row is divergence, not a glitch. (The
        gradients stay until the next step's ``zero_grad``.)"""
        self.skipped_steps += 1
        self.bad_in_a_row += 1
        where = f"epoch {epoch + 1} step {step + 1}"
        if self.bad_in_a_row >= MAX_BAD_STEPS:
            raise DivergedError(
                f"training diverged at {where}: {why} for {self.bad_in_a_row} steps in a "
                "row; lower optim.lr or set optim.grad_clip"
            )
        log.warning("%s: %s; update skipped", where, why)

    def train_epoch(self, epoch: int) -> int:
        """Train one epoch (from the resume position if it is the first). Returns the
        number of images seen; sets :attr:`stopped` when the budget ran out mid-epoch."""
        cfg, bs, spe = self.cfg, self.cfg.train.batch_size, self.steps_per_epoch
        first = self.start_step if epoch == self.start_epoch else 0
        self.train_ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(first * bs)
        if epoch != self.start_epoch:
            self.epoch_loss_sum, self.epoch_images = 0.0, 0
        self.net.train()
        self._freeze_encoder(epoch)
        desc = f"epoch {epoch + 1}/{cfg.train.epochs}"
        bar = progress_bar(spe, first, desc, self.ctx.is_main and cfg.train.progress)
        t0, seen = time.perf_counter(), 0
        plan_after = min(PLAN_AFTER_STEPS, spe - first - 1)  # a short epoch plans sooner
        for step, (x, y) in enumerate(self.loader, start=first):
            loss = self._step(x.contiguous(memory_format=self.memory_format), y, epoch, step)
            if loss is not None:  # a skipped step's loss is not finite: kept out of the mean
                self.epoch_loss_sum += float(loss) * x.shape[0]
                self.epoch_images += x.shape[0]
            seen += x.shape[0]
            if epoch == self.start_epoch and step - first == 0:
                t_plan = time.perf_counter()  # after one step: allocations are done
            elif epoch == self.start_epoch and step - first == plan_after:
                self._announce_plan((time.perf_counter() - t_plan) / plan_after, epoch, step)
            if bar is not None:
                spent = max(time.perf_counter() - t0, 1e-9)
                shown = "skipped" if loss is None else f"{loss.item():.3f}"
                # The bar's own ETA is this epoch's; the run's end is what a user plans with.
                left = (spe - step - 1 + spe * (cfg.train.epochs - epoch - 1)) * spent
                ends = finish_time(left / (step - first + 1))
                rate = f"{seen * self.ctx.world_size / spent:.1f}"
                bar.set_postfix(loss=shown, img_s=rate, run_ends=ends)
                bar.update(1)
            done = step + 1
            every = cfg.train.save_every_steps
            over = self.over_budget()
            if done < spe and ((every and done % every == 0) or over):
                self.save_last(epoch, done, {})
            if over and done < spe:
                self.stopped = True
                break
        if bar is not None:
            bar.close()
        return seen

    def _announce_plan(self, step_s: float, epoch: int, step: int) -> None:
        """State how long the rest of the run takes here, measured on its first steps: the
        user learns it before the long part, not after."""
        self.step_s = step_s
        if not self.ctx.is_main:
            return
        cfg, spe = self.cfg, self.steps_per_epoch
        steps = (spe - step - 1) + spe * (cfg.train.epochs - epoch - 1)
        left = steps * step_s
        if self.budget_s is not None:
            left = min(left, self.budget_s - (time.perf_counter() - self.t_start))
        msg = (
            f"planned: {cfg.train.epochs} epochs of {spe} steps, {step_s:.2f} s a step on "
            f"{cpu_name()}: about {format_duration(left)} of training left (plus validation), "
            f"until about {finish_time(left)}"
        )
        if cfg.train.max_minutes:
            msg += f"; train.max_minutes={cfg.train.max_minutes:g} stops it resumably"
        if cfg.train.progress:
            progress_write(msg)
        else:
            log.warning(msg)

    def _freeze_encoder(self, epoch: int) -> None:
        """``train.freeze_encoder_bn``: the encoder's BatchNorm layers keep their loaded
        statistics (eval mode); ``train.freeze_encoder_epochs``: no encoder gradients (nor
        its backward pass) until that many epochs have run."""
        encoder = encoder_of(self.model)
        if encoder is None:
            return
        if self.cfg.train.freeze_encoder_bn:
            for m in encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        frozen = epoch < self.cfg.train.freeze_encoder_epochs
        for p in encoder.parameters():
            p.requires_grad_(not frozen)

    def validate(self) -> dict[str, Any]:
        """Metrics of the model on the validation split (all ranks join)."""
        model = self.model
        for hook in self.hooks:
            model = hook.eval_model(model)
        assert self.val_ds is not None  # validate() runs only with a val split
        cm, _ = confusion_over(
            model,
            self.val_ds,
            batch_size=self.cfg.train.batch_size,
            ctx=self.ctx,
            channels_last=self.cfg.train.channels_last,
            bf16=self.cfg.train.bf16,
        )
        return segmentation_metrics(cm, self.info.classes)

    def _epoch_row(self, epoch: int, seen: int, seconds: float) -> dict[str, Any]:
        totals = self.ctx.all_reduce_sum(
            torch.tensor([self.epoch_loss_sum, float(self.epoch_images)])
        )
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0]) / max(float(totals[1]), 1.0),
            "images_per_s": seen * self.ctx.world_size / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }
        if self.skipped_steps:  # in this epoch (counted afresh for the next)
            row["skipped_steps"], self.skipped_steps = self.skipped_steps, 0
        for hook in self.hooks:
            row.update(hook.log_state())
        return row

    def _validate_epoch(self, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        """Validate after ``epoch`` when due; step a plateau schedule; keep the best."""
        last_epoch = epoch + 1 == self.cfg.train.epochs
        due = (epoch + 1) % self.cfg.train.eval_every == 0 or last_epoch
        if self.val_ds is None or not due:
            return {}
        te = time.perf_counter()
        metrics = self.validate()
        row.update(
            val_miou=metrics["miou"],
            val_pixel_acc=metrics["pixel_acc"],
            val_mean_acc=metrics["mean_acc"],
            val_iou=metrics["iou"],
            eval_seconds=time.perf_counter() - te,
        )
        score = metrics["miou"] if metrics["miou"] is not None else 0.0
        if not self.per_iter:
            self.scheduler.step(score)
        if score > self.best and all(h.best_allowed(self) for h in self.hooks):
            self.best, self.best_epoch = score, epoch + 1
            self.save_best(epoch + 1, metrics)
        return metrics

    # ------------------------------------------------------------------ saving

    def _checkpoint(self, model: nn.Module, epoch: int, metrics: dict[str, Any], **kw: Any) -> Any:
        return make_checkpoint(
            model,
            self.info,
            input_size=self.cfg.data.crop_size,
            epoch=epoch,
            step=self.global_step,
            metrics=metrics,
            config=config_to_dict(self.cfg),
            **kw,
        )

    def save_last(self, epoch: int, epoch_step: int, metrics: dict[str, Any]) -> None:
        """Write ``last.pt`` (every rank joins the RNG gather; rank 0 writes)."""
        rngs = self.ctx.all_gather_object(_rng_state())
        if not self.ctx.is_main:
            return
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch_step": epoch_step,
            "epochs": self.cfg.train.epochs,
            "epoch_cap": self.epoch_cap,  # train.replan's cap: config.yaml holds the plan
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_images": self.epoch_images,
            "best_score": self.best,
            "best_epoch": self.best_epoch,
            "rng": rngs,
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
        }
        if self.train_net.heads is not None:
            state["aux_heads"] = self.train_net.heads.state_dict()
        ckpt = self._checkpoint(self.model, epoch, metrics, train_state=state)
        save_checkpoint(ckpt, self.last_path)

    def save_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Write ``best.pt``: the deployable model (hooks may strip training-only parts)."""
        if not self.ctx.is_main:
            return
        model = self.model
        for hook in self.hooks:
            model = hook.deployable(model)
        save_checkpoint(self._checkpoint(model, epoch, metrics), self.best_path)

    # ------------------------------------------------------------------ the run

    def fit(self) -> TrainResult:
        """Set up, resume if asked, train every remaining epoch (or until the budget
        runs out), and finish."""
        ckpt = self.setup()
        if not self.ctx.is_main:
            return self._fit(ckpt)
        # One writer per run directory: a second process gets one line naming this one.
        with folder_lock(self.run_dir, "run directory"):
            if ckpt is None:
                self._check_run_dir()  # again, under the lock: no run started meanwhile
            return self._fit(ckpt)

    def _fit(self, ckpt: dict[str, Any] | None) -> TrainResult:
        if ckpt is not None:
            self.resume(ckpt)
        self._prepare_run()
        epoch = self.start_epoch
        while epoch < self.cfg.train.epochs:  # train.replan may move the end
            t0 = time.perf_counter()
            seen = self.train_epoch(epoch)
            if self.stopped:
                log.info("time budget reached mid-epoch %d; last.pt can resume", epoch + 1)
                break
            row = self._epoch_row(epoch, seen, time.perf_counter() - t0)
            self.replan(epoch + 1, row)  # before validating: it decides the last epoch
            metrics = self._validate_epoch(epoch, row)
            self.log.epoch(row)
            self.epoch_loss_sum, self.epoch_images = 0.0, 0
            epoch += 1
            self.save_last(epoch, 0, metrics)
            self._log_epoch(row)
            if epoch < self.cfg.train.epochs and self.over_budget():
                self.stopped = True
                break
        self.log.close()
        return self.finish()

    def replan(self, done: int, row: dict[str, Any]) -> None:
        """With ``train.replan``: set ``train.epochs`` (and the schedule's length) to what
        fits the time left after ``done`` epochs (``row`` is the last one's log row), from
        the median of the last epochs' train times plus validation spread over
        ``eval_every``: a noisy machine changes the plan, not the budget. Never below
        ``done``, never above ``train.max_epochs`` (null: the recipe's ``train.epochs``),
        so a plan shrunk by slow epochs grows back when the machine is free again."""
        t = self.cfg.train
        if not t.replan or self.budget_s is None:
            return
        rows = [*self.log.rows[-4:], row]
        evals = [r["eval_seconds"] for r in rows if "eval_seconds" in r]
        cost = float(np.median([r["epoch_seconds"] for r in rows]))
        cost += (float(np.mean(evals)) if evals else 0.0) / t.eval_every
        left = self.budget_s - (time.perf_counter() - self.t_start)
        fits = max(int(left / max(cost, 1e-6)), 0)
        if self.ctx.enabled:  # every rank plans the same length
            fits = int(self.ctx.all_reduce_sum(torch.tensor([float(fits)])).item()) // (
                self.ctx.world_size
            )
        planned = min(max(done + fits, done), self.epoch_cap)
        if planned == t.epochs:
            return
        log.info(
            "re-planned: %d -> %d epochs (%.1f s per epoch, %.0f s left)",
            t.epochs,
            planned,
            cost,
            left,
        )
        t.epochs = planned
        self._set_schedule_length(planned)

    def _set_schedule_length(self, epochs: int) -> None:
        """Make a per-iteration schedule (poly, cosine, constant) end after ``epochs``."""
        if isinstance(getattr(self.scheduler, "lr_lambdas", [None])[0], ScheduleFactor):
            for f in self.scheduler.lr_lambdas:
                f.total = epochs * self.steps_per_epoch

    def _log_epoch(self, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        msg = f"epoch {row['epoch']}: loss {row['train_loss']:.4f}"
        if row.get("val_miou") is not None:
            msg += f", val mIoU {row['val_miou']:.4f}"
        msg = f"{msg}, {row['images_per_s']:.1f} img/s"
        if self.cfg.train.progress:  # under the progress bars, without -v
            progress_write(msg)
        else:
            log.info(msg)

    def finish(self) -> TrainResult:
        """Check the ranks agree, write ``summary.json``, and return the result."""
        # DDP keeps replicas equal; check it, so a silent divergence is caught, not shipped.
        checksum = float(sum(p.detach().double().sum() for p in self.model.parameters()))
        sums = self.ctx.all_gather_object(checksum)
        result = TrainResult(
            run_dir=self.run_dir,
            epochs_done=len(self.log.rows),
            best_miou=self.best if self.best_epoch is not None else None,
            best_epoch=self.best_epoch,
            history=self.log.rows,
            stopped_by_budget=self.stopped,
            train_seconds=time.perf_counter() - self.t_start,
        )
        if self.ctx.is_main:
            atomic_write_json(
                self.run_dir / "summary.json",
                {
                    "model": self.cfg.model.name,
                    "epochs_done": result.epochs_done,
                    "epochs": self.cfg.train.epochs,
                    "best_miou": result.best_miou,
                    "best_epoch": self.best_epoch,
                    "stopped_by_budget": self.stopped,
                    "world_size": self.ctx.world_size,
                    "rank_weight_checksums": sums,
                    "last_checkpoint": str(self.last_path),
                    "best_checkpoint": str(self.best_path) if self.best_path.is_file() else None,
                },
            )
        # Ranks leave together: rank 1 must not tear down its side of the group while
        # rank 0 still writes the summary.
        self.ctx.barrier()
        if len(set(sums)) > 1:
            raise EdgesegError(f"ranks ended with different weights (checksums {sums})")
        return result


def train(
    config: Config, *, resume: bool = False, hooks: list[TrainHook] | None = None
) -> TrainResult:
    """Train ``config.model`` on ``config.data``; write checkpoints and logs to the run dir.

    Resumption is exact (see the module docstring); under torchrun the run is distributed.

    Args:
        config: the recipe (see :mod:`edgeseg.config`).
        resume: continue from ``RUN/last.pt``: model, optimiser, scheduler, epoch and step,
            RNG states and best score. ``config`` should be the run's own recipe
            (``RUN/config.yaml``), possibly with more epochs; a different model is refused.
        hooks: training hooks; ``None`` takes those the recipe asks for.

    Returns:
        A :class:`TrainResult`.

    Raises:
        EdgesegError: bad config, data or checkpoint (one line); the run directory is left
            as it was.
    """
    return Trainer(config, resume=resume, hooks=hooks).fit()


def step_seconds(
    config: Config, size: tuple[int, int] | None = None, *, warmup: int = 2, timed: int = 5
) -> float:
    """Median seconds of one optimizer step of ``config`` on this machine.

    The recipe's own step on a random batch (its loss, auxiliary heads, EMA update,
    teacher forward, gradient clipping, memory format, bf16), so that a budget in time
    buys a recipe with a costly extra fewer epochs, as it would in a real run. Untimed
    ``warmup`` steps first (allocations, kernel choice), then the median of ``timed``
    ones, so one step slowed by another process does not set the figure. Nothing is
    written; ``config`` is not changed.

    Args:
        config: the recipe; its data are read (class weights, the teacher's check).
        size: ``(H, W)`` of the batch; default ``data.crop_size``.
    """
    cfg = copy.deepcopy(config)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out = tmp  # an empty run directory: setup refuses to train over a run
        trainer = Trainer(cfg)
        trainer.setup()
        trainer._build_net()
        h, w = size or cfg.data.crop_size or (cfg.data.eval_size or (256, 256))
        bs, k = cfg.train.batch_size, trainer.info.num_classes
        x = torch.randn(bs, 3, h, w).contiguous(memory_format=trainer.memory_format)
        y = torch.randint(0, k, (bs, h, w))  # (B, H, W) labels
        trainer.train_net.train()
        times = []
        for i in range(warmup + timed):
            t = time.perf_counter()
            trainer._step(x, y, 0, i)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return float(np.median(times))
