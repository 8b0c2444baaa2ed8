"""Training features that buy accuracy per CPU-hour, each a recipe option:

- auxiliary heads (``train.aux_weight``): :class:`AuxNet` adds the model's training-only
  heads' losses (BiSeNet V2's boosters); the inference graph never sees them;
- an exponential moving average of the weights (``train.ema``): :class:`EMAHook`
  validates the average and saves it as ``best.pt``;
- knowledge distillation (``train.teacher``): :class:`DistillHook` adds a pixel-wise KL
  between temperature-scaled student and teacher logits, the teacher in eval mode and
  without gradients.

OHEM is a loss (``train.loss: ohem``, :class:`edgeseg.losses.SegmentationLoss`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from edgeseg.config import Config
from edgeseg.data.presets import DatasetInfo
from edgeseg.engine.checkpoint import load_model
from edgeseg.engine.hooks import TrainHook, register_hook
from edgeseg.errors import ConfigError
from edgeseg.losses import distillation_loss

__all__ = ["AuxNet", "DistillHook", "EMAHook", "aux_heads_of"]

log = logging.getLogger(__name__)


def aux_heads_of(model: nn.Module, weight: float) -> nn.ModuleDict | None:
    """The model's auxiliary heads when ``weight > 0``.

    Raises:
        ConfigError: the model has none.
    """
    if weight <= 0:
        return None
    if not hasattr(model, "aux_heads") or not hasattr(model, "forward_taps"):
        name = getattr(model, "edgeseg_config", {}).get("name", type(model).__name__)
        raise ConfigError(
            f"train.aux_weight={weight}: model '{name}' has no auxiliary heads "
            "(bisenetv2, fastscnn, ddrnet23_slim and ppliteseg_* have)"
        )
    return model.aux_heads()  # type: ignore[operator]  # checked just above


class AuxNet(nn.Module):
    """The network that steps in training: the model and its auxiliary heads.

    ``forward(x) -> (logits, [aux logits])``, all at the input's size. One module, so
    that DistributedDataParallel sees every parameter in one forward.
    """

    def __init__(self, model: nn.Module, heads: nn.ModuleDict | None) -> None:
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.heads is None:
            return self.model(x), []
        return self.model.forward_aux(x, self.heads)  # type: ignore[operator]  # has heads


def ema_decay(decay: float, n: int) -> float:
    """The decay of the ``n``-th update: ``min(decay, (1 + n) / (10 + n))``, as
    TensorFlow's ``ExponentialMovingAverage(num_updates=n)``.

    Without the warm-up a fixed 0.999 keeps ``0.999 ** n`` of the random initialisation in
    the average (26 % after 1,350 steps), and an average of weights that far apart is no
    network: Fast-SCNN's EMA scored 0.03 val mIoU after 15 minutes where its weights
    scored 0.58. With it, the average forgets the start within a few hundred steps.
    """
    return min(decay, (1.0 + n) / (10.0 + n))


class EMAHook(TrainHook):
    """An exponential moving average of the weights (and BatchNorm statistics).

    After every optimizer step ``avg = d * avg + (1 - d) * weights``, with ``d`` rising to
    ``decay`` (:func:`ema_decay`); validation scores the average and ``best.pt`` stores it
    (as timm's ``ModelEmaV3`` with warm-up, on torch's own
    :class:`~torch.optim.swa_utils.AveragedModel`).
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.ema: AveragedModel | None = None

    def attach(self, trainer: Any) -> None:
        self.ema = AveragedModel(trainer.model, multi_avg_fn=self._average, use_buffers=True)

    def _average(
        self,
        avg: tuple[torch.Tensor, ...] | list[torch.Tensor],
        now: tuple[torch.Tensor, ...] | list[torch.Tensor],
        n: torch.Tensor | int,
    ) -> None:
        # AveragedModel copies the weights at its first update (n = 0), then calls this
        # with n = 1, 2, ... once per (device, dtype) group: integer buffers
        # (num_batches_tracked) come as their own group and are copied, not averaged.
        if avg[0].is_floating_point():
            torch._foreach_lerp_(avg, now, 1.0 - ema_decay(self.decay, int(n)))
        else:
            torch._foreach_copy_(avg, now)

    def after_step(self, trainer: Any) -> None:
        assert self.ema is not None
        self.ema.update_parameters(trainer.model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        return self.ema.module if self.ema is not None else model

    def deployable(self, model: nn.Module) -> nn.Module:
        if self.ema is None:
            return model
        avg = self.ema.module
        avg.edgeseg_config = getattr(model, "edgeseg_config", None)  # type: ignore[assignment]
        return avg

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])


class DistillHook(TrainHook):
    """Pixel-wise distillation from a trained teacher (a checkpoint or shipped weights).

    Raises:
        ConfigError: the teacher predicts another number of classes, or normalises its
            input differently (it would see other pixels than the student).
    """

    def __init__(self, path: str, weight: float, temperature: float) -> None:
        self.path, self.weight, self.temperature = path, weight, temperature
        self.teacher: nn.Module | None = None

    def attach(self, trainer: Any) -> None:
        teacher, ckpt = load_model(self.path)
        info: DatasetInfo = trainer.info
        k = int(ckpt["model"]["num_classes"])
        if k != info.num_classes:
            raise ConfigError(
                f"train.teacher {self.path} predicts {k} classes, the data has {info.num_classes}"
            )
        t_info = DatasetInfo.from_dict(ckpt["dataset"])
        if list(t_info.mean) != list(info.mean) or list(t_info.std) != list(info.std):
            raise ConfigError(f"train.teacher {self.path} normalises its input differently")
        self.teacher = teacher.eval().to(memory_format=trainer.memory_format)  # type: ignore[call-overload]
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        log.info("distilling %s into %s", ckpt["model"]["name"], info.name)

    def extra_loss(
        self, trainer: Any, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        assert self.teacher is not None
        with torch.no_grad():
            t = self.teacher(x).float()  # (B, K, H, W), constants
        valid = y != trainer.info.ignore_index
        return self.weight * distillation_loss(logits, t, self.temperature, valid)


def _ema(config: Config) -> EMAHook | None:
    if config.train.ema is None:
        return None
    if config.compress.groups is not None or config.compress.sparsity is not None:
        raise ConfigError("train.ema cannot be combined with compress (masked weights)")
    return EMAHook(config.train.ema)


def _distill(config: Config) -> DistillHook | None:
    t = config.train
    return DistillHook(t.teacher, t.kd_weight, t.kd_temperature) if t.teacher else None


register_hook("ema", _ema)
register_hook("distill", _distill)
