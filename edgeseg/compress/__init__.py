"""Compression: sparsification, gradual grouping, int8 quantization (and their training hook).

- :mod:`edgeseg.compress.sparsify`: magnitude pruning on seed 003's polynomial schedule.
- :mod:`edgeseg.compress.grouping`: the ESSNet thesis' gradual grouping.
- :mod:`edgeseg.deploy.quantize`: post-training int8 (ONNX Runtime, PT2E).

:class:`TrainingCompression` applies the first two from a recipe's ``compress`` section
inside :func:`edgeseg.train`; :func:`deployable` turns a model under compression into a
plain one (masks stripped, grouped convs extracted) for checkpoints that are deployed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeseg.compress.grouping import AlphaSchedule, GradualGrouping, extract
from edgeseg.compress.prune import resize_to_state_dict
from edgeseg.compress.sparsify import PolynomialSchedule, Sparsifier, sparsity_report, strip
from edgeseg.config import Config, config_from_dict
from edgeseg.engine.checkpoint import is_compressed_state, load_weights
from edgeseg.engine.hooks import TrainHook, register_checkpoint_adapter, register_hook

__all__ = ["CompressionHook", "TrainingCompression", "deployable", "is_compressed_state"]


class TrainingCompression:
    """The ``compress`` section of a recipe, applied to a model during training.

    Args:
        model: the model (masks are attached now).
        cfg: a :class:`edgeseg.config.CompressConfig`.
        total_steps: optimizer steps of the whole run (the schedules are fractions of it).
    """

    def __init__(self, model: nn.Module, cfg: Any, total_steps: int) -> None:
        total = max(int(total_steps), 1)
        self.sparsifier: Sparsifier | None = None
        self.grouping: GradualGrouping | None = None
        # Grouping first: the layers it masks are then left out of the sparsification.
        if cfg.groups is not None:
            alpha = AlphaSchedule(max(int(cfg.group_fraction * total), 1), cfg.group_schedule)
            self.grouping = GradualGrouping(model, cfg.groups, alpha, shuffle=cfg.group_shuffle)
        if cfg.sparsity is not None:
            begin = int(cfg.sparsity_begin * total)
            sched = PolynomialSchedule(
                final=cfg.sparsity,
                initial=cfg.sparsity_initial,
                begin_step=begin,
                end_step=max(int(cfg.sparsity_end * total), begin + 1),
                every=cfg.sparsity_every,
            )
            self.sparsifier = Sparsifier(model, sched, cfg.sparsity_layers)

    @property
    def active(self) -> bool:
        """Whether anything is applied."""
        return self.sparsifier is not None or self.grouping is not None

    def step(self, global_step: int) -> None:
        """Follow the schedules after optimizer step ``global_step``."""
        if self.sparsifier is not None:
            self.sparsifier.step(global_step)
        if self.grouping is not None:
            self.grouping.step(global_step)

    def complete(self, global_step: int) -> bool:
        """Whether the schedules have ended (final sparsity reached, alpha at 0): only
        then is the model the compressed one a best checkpoint may hold."""
        if self.sparsifier is not None and global_step < self.sparsifier.schedule.end_step:
            return False
        return self.grouping is None or self.grouping.alpha == 0.0

    def state(self) -> dict[str, float]:
        """Current target sparsity and grouping alpha, for the training log."""
        out: dict[str, float] = {}
        if self.sparsifier is not None:
            out["sparsity"] = self.sparsifier.current
        if self.grouping is not None:
            out["group_alpha"] = self.grouping.alpha
        return out


def deployable(model: nn.Module) -> nn.Module:
    """A plain copy of a model under compression: sparsity masks stripped (zeros kept),
    grouped convs extracted when alpha is 0, else the masked weights baked into plain convs.

    The original model is untouched (it keeps training). Parametrized modules share a
    dynamically created class with their deep copies, so the copy's masked convs are
    *replaced* by new modules rather than un-parametrized in place (which would delete the
    ``weight`` property from the shared class and break the original).
    """
    for mod in model.modules():
        if hasattr(mod, "weight_mask"):
            # The pruning hook's last ``weight`` is a non-leaf tensor that deepcopy refuses;
            # the next forward recomputes it anyway.
            mod.weight = (mod.weight_orig * mod.weight_mask).detach()
    m = copy.deepcopy(model)
    strip(m)
    masked = [
        (parent, name, child)
        for parent in m.modules()
        for name, child in parent.named_children()
        if parametrize.is_parametrized(child, "weight")
    ]
    if not masked:
        return m
    if float(masked[0][2].parametrizations.weight[0].alpha) == 0.0:
        return extract(m)
    for parent, name, conv in masked:
        plain = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            plain.weight.copy_(conv.weight)  # the effective, masked weight
            if conv.bias is not None:
                plain.bias.copy_(conv.bias)
        setattr(parent, name, plain)
    return m


def is_active(cfg: Any) -> bool:
    """Whether a ``compress`` section asks for anything during training."""
    return cfg.groups is not None or cfg.sparsity is not None


class CompressionHook(TrainHook):
    """The recipe's ``compress`` section inside the training loop.

    Masks attach before any weights load (so a resumed state dict, masks included,
    fits); the schedules follow every optimizer step; only a model at the schedules' end
    may become ``best.pt``, and it is stored plain (:func:`deployable`).
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.compression: TrainingCompression | None = None

    def attach(self, trainer: Any) -> None:
        total = trainer.steps_per_epoch * trainer.cfg.train.epochs
        self.compression = TrainingCompression(trainer.model, self.cfg, total)

    def after_step(self, trainer: Any) -> None:
        assert self.compression is not None
        self.compression.step(trainer.global_step)

    def log_state(self) -> dict[str, float]:
        return self.compression.state() if self.compression is not None else {}

    def best_allowed(self, trainer: Any) -> bool:
        return self.compression is None or self.compression.complete(trainer.global_step)

    def deployable(self, model: nn.Module) -> nn.Module:
        return deployable(model)


def _hook(config: Config) -> CompressionHook | None:
    return CompressionHook(config.compress) if is_active(config.compress) else None


def _restore_pruned(model: nn.Module, ckpt: dict[str, Any]) -> nn.Module:
    """A pruned checkpoint: narrow the fresh model's layers to the saved widths."""
    resize_to_state_dict(model, ckpt["state_dict"])
    model.edgeseg_config["pruned"] = True
    return model


def _restore_masked(model: nn.Module, ckpt: dict[str, Any]) -> nn.Module:
    """A ``last.pt`` of a run under compression: attach its masks, load, make it plain."""
    cfg = config_from_dict(dict(ckpt.get("config") or {}))
    TrainingCompression(model, cfg.compress, total_steps=1)
    load_weights(model, ckpt)
    return deployable(model)


register_hook("compress", _hook)
register_checkpoint_adapter("pruned", _restore_pruned)
register_checkpoint_adapter("masked", _restore_masked)

__all__ += ["AlphaSchedule", "GradualGrouping", "PolynomialSchedule", "Sparsifier"]
__all__ += ["extract", "sparsity_report", "strip"]
