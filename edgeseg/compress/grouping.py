"""Gradual grouping (the ESSNet thesis, section 3.5): dense 1x1 convs that become grouped.

Each dense pointwise weight ``W`` (C_out x C_in) of a Conv-module is multiplied by a mask
``M(alpha)``: 1 where output channel ``a`` and input channel ``b`` fall in the same block of
``C/g`` contiguous channels, ``alpha`` elsewhere. ``alpha`` goes from 1 (the dense conv) to
0 (exactly a ``g``-group conv, stored densely) during the first part of training; the
model is then fine-tuned at ``alpha = 0`` and :func:`extract` copies the diagonal blocks
into real ``Conv2d(groups=g)`` layers, with the parameter count of layer ``DG<g>``.

The thesis does not give the schedule's shape; edgeseg offers ``linear`` (default) and
``cosine`` (``alpha = (1 + cos(pi t / T)) / 2``), both from 1 at step 0 to 0 at ``T``.
The mask is a ``torch.nn.utils.parametrize`` parametrization, so the optimiser updates the
dense weight and the off-diagonal blocks fade out smoothly instead of being cut at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeseg.errors import EdgesegError

__all__ = ["AlphaSchedule", "BlockMask", "GradualGrouping", "block_mask", "extract"]


def block_mask(channels_out: int, channels_in: int, groups: int, alpha: float) -> torch.Tensor:
    """``(C_out, C_in, 1, 1)``: 1 on the ``groups`` diagonal blocks, ``alpha`` elsewhere."""
    if channels_out % groups or channels_in % groups:
        raise EdgesegError(
            f"groups={groups} does not divide the channels ({channels_in} -> {channels_out})"
        )
    bo = torch.arange(channels_out) // (channels_out // groups)  # block of each output
    bi = torch.arange(channels_in) // (channels_in // groups)  # block of each input
    same = (bo[:, None] == bi[None, :]).float()
    return (same + alpha * (1.0 - same))[:, :, None, None]


class BlockMask(nn.Module):
    """Parametrization ``W -> W * M(alpha)``; set :attr:`alpha` to move along the schedule."""

    def __init__(self, channels_out: int, channels_in: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.register_buffer("diag", block_mask(channels_out, channels_in, groups, 0.0))
        self.register_buffer("alpha", torch.tensor(1.0))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # diag + alpha * (1 - diag): 1 inside the blocks, alpha outside.
        return weight * (self.diag + self.alpha * (1.0 - self.diag))


@dataclass(frozen=True)
class AlphaSchedule:
    """``alpha`` from 1 at step 0 to 0 at ``steps``, then 0.

    Attributes:
        steps: length of the transition (the "first part of training").
        shape: ``"linear"`` or ``"cosine"``.
    """

    steps: int
    shape: str = "linear"

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise EdgesegError(f"grouping steps={self.steps} must be positive")
        if self.shape not in ("linear", "cosine"):
            raise EdgesegError(f"grouping schedule must be linear or cosine, got {self.shape!r}")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.steps) / self.steps
        if self.shape == "linear":
            return 1.0 - t
        return 0.5 * (1.0 + math.cos(math.pi * t))


def _pointwise_convs(model: nn.Module, scope: str | None) -> list[tuple[nn.Module, str, nn.Conv2d]]:
    """(parent Conv-module, attribute, conv) for every dense pointwise conv of a Conv-module
    inside the submodule ``scope`` (the whole model if None or absent)."""
    from edgeseg.layers.conv_module import ConvModule

    root = getattr(model, scope, None) if scope else None
    found = []
    for mod in (root or model).modules():
        if isinstance(mod, ConvModule):
            for attr in ("pw1", "pw2"):
                conv = getattr(mod, attr)
                if isinstance(conv, nn.Conv2d) and conv.groups == 1:
                    found.append((mod, attr, conv))
    return found


class GradualGrouping:
    """Masks every dense pointwise conv of a model's Conv-modules toward ``groups`` groups.

    Call :meth:`step` with the global step after each optimizer step (or set
    :meth:`set_alpha` yourself); :func:`extract` when training is done.

    Args:
        model: a model with Conv-modules in layer D (e.g. ``essnet(layer="D")``).
        groups: g (2, 4, 8, ...); must divide every masked conv's channels.
        schedule: how alpha goes from 1 to 0.
        shuffle: also insert a channel shuffle after each module's first pointwise conv
            (toward DGCS); a permutation, harmless while the conv is dense.
        scope: the submodule whose Conv-modules are grouped: ``"encoder"`` (the thesis:
            "the encoder's Conv-modules", which is also what ``layer="DG<g>"`` builds);
            None for every Conv-module of the model.

    Raises:
        EdgesegError: the model has no dense Conv-module pointwise conv, or ``groups``
            does not divide its channels.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: int,
        schedule: AlphaSchedule,
        shuffle: bool = False,
        scope: str | None = "encoder",
    ) -> None:
        from edgeseg.layers.conv_module import ChannelShuffle

        if groups < 2:
            raise EdgesegError(f"groups must be at least 2, got {groups}")
        convs = _pointwise_convs(model, scope)
        if not convs:
            name = getattr(model, "edgeseg_config", {}).get("name", type(model).__name__)
            raise EdgesegError(
                f"gradual grouping needs dense Conv-module layers (ESSNet family, layer D); "
                f"{name} has none"
            )
        for _, _, conv in convs:
            if conv.in_channels % groups or conv.out_channels % groups:
                raise EdgesegError(f"groups={groups} does not divide {conv.in_channels} channels")
        self.model, self.groups, self.schedule = model, groups, schedule
        self.masks: list[BlockMask] = []
        for parent, attr, conv in convs:
            mask = BlockMask(conv.out_channels, conv.in_channels, groups)
            parametrize.register_parametrization(conv, "weight", mask)
            self.masks.append(mask)
            if shuffle and attr == "pw1":
                parent.shuffle = ChannelShuffle(groups)
        self.alpha = 1.0

    def set_alpha(self, alpha: float) -> None:
        """Set every mask's off-diagonal value."""
        for m in self.masks:
            m.alpha.fill_(alpha)
        self.alpha = alpha

    def step(self, step: int) -> float:
        """Follow the schedule at ``step``; returns alpha."""
        self.set_alpha(self.schedule(step))
        return self.alpha


def extract(model: nn.Module) -> nn.Module:
    """Replace every masked pointwise conv by a ``Conv2d(groups=g)`` with its diagonal blocks.

    Exact when alpha is 0 (the masked conv then *is* a grouped conv). The model's
    ``edgeseg_config`` (for checkpoints) is updated to the grouped layer (``DG<g>``).
    """
    from edgeseg.layers.conv_module import ConvModule

    groups = None
    for mod in model.modules():
        if not isinstance(mod, ConvModule):
            continue
        for attr in ("pw1", "pw2"):
            conv = getattr(mod, attr)
            if not parametrize.is_parametrized(conv, "weight"):
                continue
            mask = conv.parametrizations.weight[0]
            g = mask.groups
            dense = conv.parametrizations.weight.original.detach()  # (C_out, C_in, 1, 1)
            co, ci = dense.shape[:2]
            grouped = nn.Conv2d(ci, co, 1, groups=g, bias=conv.bias is not None)
            with torch.no_grad():
                for b in range(g):
                    rows = slice(b * co // g, (b + 1) * co // g)
                    cols = slice(b * ci // g, (b + 1) * ci // g)
                    grouped.weight[rows] = dense[rows, cols]
                if conv.bias is not None:
                    grouped.bias.copy_(conv.bias)
            setattr(mod, attr, grouped.to(dense.device))
            groups = g
    if groups is None:
        raise EdgesegError("nothing to extract: no masked pointwise conv (run GradualGrouping)")
    cfg = getattr(model, "edgeseg_config", None)
    if cfg is not None:  # only the ESSNet family has Conv-modules; its builders take layer
        cfg["kwargs"] = {**cfg.get("kwargs", {}), "layer": f"DG{groups}"}
    return model
