"""The training loop: resumable to the step, distributed with torchrun, CPU-friendly.

Resumption is exact: the shuffling order of an epoch depends only on ``(seed, epoch)``,
augmentation only on ``(seed, epoch, sample)``, and ``last.pt`` holds the model, optimiser,
scheduler, every rank's RNG states, the best score and the position inside an unfinished
epoch. A run killed at any moment and resumed therefore takes the same steps as one that
never stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from edgeseg.checkpoint import load_checkpoint, load_weights, make_checkpoint, save_checkpoint
from edgeseg.compress import TrainingCompression, deployable
from edgeseg.config import Config, config_to_dict
from edgeseg.data import DatasetInfo, SegmentationDataset, build_dataset, custom_info, get_preset
from edgeseg.data.stats import class_weights
from edgeseg.data.transforms import eval_transform, train_transform
from edgeseg.engine.distributed import ResumableSampler, init_distributed
from edgeseg.engine.evaluate import confusion_over
from edgeseg.errors import CheckpointError, ConfigError, EdgesegError
from edgeseg.losses import SegmentationLoss
from edgeseg.metrics import segmentation_metrics
from edgeseg.models import create_model
from edgeseg.utils import atomic_write_json, atomic_write_text

__all__ = ["TrainResult", "build_optimizer", "build_scheduler", "dataset_info", "train"]

log = logging.getLogger(__name__)


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


def dataset_info(cfg: Config) -> DatasetInfo:
    """The :class:`DatasetInfo` a config describes (a preset, or custom classes)."""
    if cfg.data.preset == "custom":
        if not cfg.data.classes:
            raise ConfigError("data.preset=custom needs data.classes (the class names)")
        return custom_info(cfg.data.classes, ignore_index=cfg.data.ignore_index)
    try:
        return get_preset(cfg.data.preset)
    except EdgesegError as e:
        raise ConfigError(f"data.preset: {e}") from None


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim``; norm and bias parameters get no weight decay."""
    o = cfg.optim
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)


def _lr_lambda(cfg: Config, total: int, warmup: int) -> Any:
    s = cfg.sched
    floor = s.min_lr / cfg.optim.lr

    def factor(it: int) -> float:
        if warmup and it < warmup:
            return (it + 1) / warmup
        t = min((it - warmup) / max(total - warmup, 1), 1.0)
        if s.name == "poly":
            return (1.0 - t) ** s.power
        if s.name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0  # constant

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int
) -> tuple[Any, bool]:
    """The scheduler of ``cfg.sched`` and whether it steps per iteration (else per epoch).

    poly, cosine and constant are ``LambdaLR`` over iterations with an optional linear
    warm-up; onecycle is ``OneCycleLR``; plateau is ``ReduceLROnPlateau`` on val mIoU.
    """
    s = cfg.sched
    total = steps_per_epoch * cfg.train.epochs
    if s.name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[cfg.optim.lr] * len(optimizer.param_groups), total_steps=total
        )
        return sched, True
    if s.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=s.factor, patience=s.patience, min_lr=s.min_lr
        )
        return sched, False
    warmup = round(s.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total, warmup)), True


def _rng_state() -> dict[str, Any]:
    # numpy's state holds an ndarray: stored as a list so that weights_only loading works.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
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


class _Logger:
    """JSONL log (and TensorBoard when installed) written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, keep_epochs: int) -> None:
        self.path = run_dir / "log.jsonl"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # a resume: keep the rows of the epochs that are done
            for line in self.path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if row.get("epoch", 0) <= keep_epochs:
                        self.rows.append(row)
        if enabled:
            self._flush()
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            except ImportError:  # optional: tensorboard not installed
                log.info("tensorboard is not installed; logging to log.jsonl only")

    def _flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        self._flush()
        if self.tb is not None:
            ep = row["epoch"]
            self.tb.add_scalar("train/loss", row["train_loss"], ep)
            self.tb.add_scalar("train/lr", row["lr"], ep)
            self.tb.add_scalar("train/images_per_s", row["images_per_s"], ep)
            for key in ("miou", "pixel_acc", "mean_acc"):
                if row.get(f"val_{key}") is not None:
                    self.tb.add_scalar(f"val/{key}", row[f"val_{key}"], ep)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True)


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


def _init_from(model: nn.Module, path: str) -> None:
    """Start from a checkpoint's weights (fine-tuning); a pruned one narrows the layers."""

    init = load_checkpoint(path)
    if init["model"]["name"] != model.edgeseg_config["name"]:
        raise ConfigError(
            f"train.init {path} holds '{init['model']['name']}', the recipe trains "
            f"'{model.edgeseg_config['name']}'"
        )
    if init["model"].get("pruned"):
        from edgeseg.compress.prune import resize_to_state_dict

        resize_to_state_dict(model, init["state_dict"])
        model.edgeseg_config["pruned"] = True
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


def train(config: Config, *, resume: bool = False) -> TrainResult:
    """Train ``config.model`` on ``config.data``; write checkpoints and logs to the run dir.

    Under torchrun the model is wrapped in DistributedDataParallel, the training split is
    sharded by a distributed sampler, validation metrics are reduced over ranks, and only
    rank 0 writes.

    Args:
        config: the recipe (see :mod:`edgeseg.config`).
        resume: continue from ``RUN/last.pt``: model, optimiser, scheduler, epoch and step,
            RNG states and best score. ``config`` should be the run's own recipe
            (``RUN/config.yaml``), possibly with more epochs; a different model is refused.

    Returns:
        A :class:`TrainResult`.

    Raises:
        EdgesegError: bad config, data or checkpoint (one line); the run directory is left
            as it was.
    """
    t_start = time.perf_counter()
    ctx = init_distributed()
    run_dir = Path(config.train.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    ckpt: dict[str, Any] | None = None
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"nothing to resume: {last_path} does not exist")
        ckpt = load_checkpoint(last_path)
        _check_resume(ckpt, config)
    elif last_path.is_file():
        raise EdgesegError(
            f"{run_dir} already holds a run (last.pt); resume it with --resume or choose "
            "another train.out"
        )
    config.validate()
    cfg = config
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    _seed_everything(cfg.train.seed)

    info = dataset_info(cfg)
    train_ds, val_ds = _build_datasets(cfg, info)
    bs, world = cfg.train.batch_size, ctx.world_size
    if len(train_ds) < bs * world:
        raise ConfigError(
            f"train.batch_size={bs} x {world} process(es) is more than the {len(train_ds)} "
            f"training images"
        )
    weights = class_weights(train_ds, cfg.data.class_weighting)
    criterion = SegmentationLoss(
        cfg.train.loss,
        weight=weights,
        ignore_index=info.ignore_index,
        label_smoothing=cfg.train.label_smoothing,
    )
    model = create_model(cfg.model.name, num_classes=info.num_classes, **cfg.model.kwargs)
    if cfg.train.init:
        _init_from(model, cfg.train.init)
    mf = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    optimizer = build_optimizer(model, cfg)
    sampler = ResumableSampler(
        train_ds,
        num_replicas=world,
        rank=ctx.rank,
        shuffle=True,
        seed=cfg.train.seed,
        drop_last=True,
    )
    steps_per_epoch = sampler.num_samples // bs
    scheduler, per_iter = build_scheduler(optimizer, cfg, steps_per_epoch)
    # Masks attach before any weights load, so a resumed state dict (with its masks) fits.
    compression = TrainingCompression(model, cfg.compress, steps_per_epoch * cfg.train.epochs)

    start_epoch, start_step, global_step = 0, 0, 0
    best, best_epoch = -1.0, None
    epoch_loss_sum, epoch_pixels_done = 0.0, 0
    if ckpt is not None:
        load_weights(model, ckpt)
        ts = ckpt["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        start_epoch, start_step = int(ckpt["epoch"]), int(ts["epoch_step"])
        global_step = int(ckpt["step"])
        best = float(ts["best_score"])
        best_epoch = ts["best_epoch"]
        epoch_loss_sum = float(ts["epoch_loss_sum"])
        epoch_pixels_done = int(ts["epoch_images"])
        rngs = ts["rng"]
        if len(rngs) != world:
            log.warning("resuming %d ranks from %d: RNG streams restart", world, len(rngs))
        _set_rng_state(rngs[ctx.rank % len(rngs)])
        log.info("resumed %s at epoch %d step %d", last_path, start_epoch, start_step)

    net: nn.Module = model
    if ctx.enabled:
        net = DistributedDataParallel(model)
    if cfg.train.compile:
        # Crops have one size and the last partial batch is dropped, so the graph compiles
        # once (about a minute); evaluation runs the eager model on whole images.
        net = torch.compile(net)
    logger = _Logger(run_dir, ctx.is_main, cfg.train.tensorboard, keep_epochs=start_epoch)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg)))
    loader_gen = torch.Generator().manual_seed(cfg.train.seed)  # keeps the global RNG intact
    loader = DataLoader(
        train_ds,
        batch_size=bs,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        drop_last=True,
        generator=loader_gen,
        persistent_workers=False,
    )
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.train.bf16 else nullcontext()
    budget_s = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    stopped = False

    def checkpoint(epoch: int, epoch_step: int, metrics: dict[str, Any]) -> None:
        """Write last.pt (every rank joins the RNG gather; rank 0 writes)."""
        rngs = ctx.all_gather_object(_rng_state())
        if not ctx.is_main:
            return
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch_step": epoch_step,
            "epoch_loss_sum": epoch_loss_sum,
            "epoch_images": epoch_pixels_done,
            "best_score": best,
            "best_epoch": best_epoch,
            "rng": rngs,
        }
        save_checkpoint(
            make_checkpoint(
                model,
                info,
                input_size=cfg.data.crop_size,
                epoch=epoch,
                step=global_step,
                metrics=metrics,
                config=config_to_dict(cfg),
                train_state=state,
            ),
            last_path,
        )

    epoch = start_epoch
    for epoch in range(start_epoch, cfg.train.epochs):
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        sampler.set_start(start_step * bs if epoch == start_epoch else 0)
        first_step = start_step if epoch == start_epoch else 0
        if epoch != start_epoch:
            epoch_loss_sum, epoch_pixels_done = 0.0, 0
        net.train()
        bar = _progress(
            steps_per_epoch,
            first_step,
            f"epoch {epoch + 1}/{cfg.train.epochs}",
            ctx.is_main and cfg.train.progress,
        )
        t0, seen = time.perf_counter(), 0
        step = first_step
        it: Iterator[Any] = iter(loader)
        for step, (x, y) in enumerate(it, start=first_step):
            x = x.contiguous(memory_format=mf)
            with amp:
                logits = net(x)
            loss = criterion(logits.float(), y)
            if not torch.isfinite(loss):
                raise EdgesegError(
                    f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1}; lower "
                    "optim.lr or enable optim.grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            if per_iter:
                scheduler.step()
            global_step += 1
            compression.step(global_step)
            epoch_loss_sum += float(loss.detach()) * x.shape[0]
            epoch_pixels_done += x.shape[0]
            seen += x.shape[0]
            if bar is not None:
                rate = seen * world / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.1f}")
                bar.update(1)
            done_steps = step + 1
            save_now = (
                cfg.train.save_every_steps
                and done_steps % cfg.train.save_every_steps == 0
                and done_steps < steps_per_epoch
            )
            over = budget_s is not None and time.perf_counter() - t_start > budget_s
            if ctx.enabled:  # every rank must agree to stop
                flag = torch.tensor([1.0 if over else 0.0])
                over = bool(ctx.all_reduce_sum(flag).item() > 0)
            if save_now or (over and done_steps < steps_per_epoch):
                checkpoint(epoch, done_steps, {})
            if over and done_steps < steps_per_epoch:
                stopped = True
                break
        if bar is not None:
            bar.close()
        if stopped:
            log.info("time budget reached mid-epoch %d; last.pt can resume", epoch + 1)
            break
        seconds = time.perf_counter() - t0
        totals = ctx.all_reduce_sum(torch.tensor([epoch_loss_sum, float(epoch_pixels_done)]))
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": global_step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / max(totals[1], 1)),
            "images_per_s": seen * world / max(seconds, 1e-9),
            "epoch_seconds": seconds,
            **compression.state(),
        }
        metrics: dict[str, Any] = {}
        last_epoch = epoch + 1 == cfg.train.epochs
        if val_ds is not None and ((epoch + 1) % cfg.train.eval_every == 0 or last_epoch):
            te = time.perf_counter()
            cm, _ = confusion_over(
                model,
                val_ds,
                batch_size=bs,
                ctx=ctx,
                channels_last=cfg.train.channels_last,
                bf16=cfg.train.bf16,
            )
            metrics = segmentation_metrics(cm, info.classes)
            row.update(
                val_miou=metrics["miou"],
                val_pixel_acc=metrics["pixel_acc"],
                val_mean_acc=metrics["mean_acc"],
                val_iou=metrics["iou"],
                eval_seconds=time.perf_counter() - te,
            )
            score = metrics["miou"] if metrics["miou"] is not None else 0.0
            if not per_iter:
                scheduler.step(score)
            # Under compression, only a model at the schedules' end may become best.pt.
            eligible = not compression.active or compression.complete(global_step)
            if score > best and eligible:
                best, best_epoch = score, epoch + 1
                if ctx.is_main:
                    save_checkpoint(
                        make_checkpoint(
                            deployable(model) if compression.active else model,
                            info,
                            input_size=cfg.data.crop_size,
                            epoch=epoch + 1,
                            step=global_step,
                            metrics=metrics,
                            config=config_to_dict(cfg),
                        ),
                        best_path,
                    )
        logger.epoch(row)
        epoch_loss_sum, epoch_pixels_done = 0.0, 0
        checkpoint(epoch + 1, 0, metrics)
        if ctx.is_main:
            msg = f"epoch {epoch + 1}: loss {row['train_loss']:.4f}"
            if "val_miou" in row and row["val_miou"] is not None:
                msg += f", val mIoU {row['val_miou']:.4f}"
            log.info("%s, %.1f img/s", msg, row["images_per_s"])
        if budget_s is not None and time.perf_counter() - t_start > budget_s and not last_epoch:
            stopped = True
            break
    logger.close()

    # DDP keeps replicas equal; check it, so a silent divergence is caught, not shipped.
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    sums = ctx.all_gather_object(checksum)
    epochs_done = len(logger.rows)
    result = TrainResult(
        run_dir=run_dir,
        epochs_done=epochs_done,
        best_miou=best if best_epoch is not None else None,
        best_epoch=best_epoch,
        history=logger.rows,
        stopped_by_budget=stopped,
        train_seconds=time.perf_counter() - t_start,
    )
    if ctx.is_main:
        atomic_write_json(
            run_dir / "summary.json",
            {
                "model": cfg.model.name,
                "epochs_done": epochs_done,
                "epochs": cfg.train.epochs,
                "best_miou": result.best_miou,
                "best_epoch": best_epoch,
                "stopped_by_budget": stopped,
                "world_size": world,
                "rank_weight_checksums": sums,
                "last_checkpoint": str(last_path),
                "best_checkpoint": str(best_path) if best_path.is_file() else None,
            },
        )
    # Ranks leave together: rank 1 must not tear down its side of the group while rank 0
    # still writes the summary.
    ctx.barrier()
    if len(set(sums)) > 1:
        raise EdgesegError(f"ranks ended with different weights (checksums {sums})")
    return result
