"""Structured channel pruning that removes channels for real.

The dependency graph (which layers share a channel: a conv's outputs, the BatchNorm after
it, the consumers' inputs, concatenated skips, residual sums, pooled pass-throughs,
transposed convs) comes from torch-pruning (``torch_pruning.DependencyGraph``), traced on an
example input. Where a graph tool cannot be right, edgeseg cuts the channels itself:

* **grouped pointwise convs with a channel shuffle** (ESSNet's DGC / DGCS Conv-modules):
  a grouped conv must keep the same number of channels in every group, and the shuffle
  sends channel ``i*n + j`` (group ``i``, member ``j``) to ``j*g + i``, so a cut after
  ``pw1`` lands elsewhere in ``dw2`` / ``pw2``. :class:`_ConvModuleCut` removes whole
  *members* ``j`` from every group (so the pruned shuffle is again a shuffle), the same
  number from each block of members that feeds one group of ``pw2``, and maps the
  indices through the permutation. The residual channels around a grouped Conv-module
  (tied to the grouped convs' inputs and outputs) are kept.

Every cut is a :class:`Cut` with ``kill()`` (zero what produces the channels: used by
tests to prove that removing dead channels leaves the outputs unchanged) and ``apply()``.
A pruned model keeps its class and forward; only layer widths change. Its checkpoint
records ``"pruned": true`` and :func:`resize_to_state_dict` rebuilds the narrower layers
when it loads.

Importance is the L1 norm of the weights that produce each channel, summed over the
coupled layers (torch-pruning's group magnitude importance); each coupled group loses the
same fraction, rounded so that ``round_to`` divides what is left (multiples of 8 keep the
CPU's vector units full).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError

__all__ = ["Cut", "plan_pruning", "prune_channels", "resize_to_state_dict"]

log = logging.getLogger(__name__)


class Cut:
    """One set of coupled channels to remove."""

    description: str = ""
    removed: int = 0  # channels removed (per coupled layer)

    def kill(self) -> None:  # pragma: no cover - interface
        """Zero the parameters producing the channels (outputs then do not depend on them)."""
        raise NotImplementedError

    def apply(self) -> None:  # pragma: no cover - interface
        """Remove the channels from every coupled layer."""
        raise NotImplementedError


def _zero_out_channels(layer: nn.Module, idxs: list[int]) -> None:
    """Zero what makes output channels ``idxs`` of ``layer`` non-zero."""
    with torch.no_grad():
        if isinstance(layer, nn.ConvTranspose2d):
            g = layer.groups
            per = layer.out_channels // g
            in_per = layer.in_channels // g
            for k in idxs:  # weight (in, out/g, kh, kw): output k is in group k // per
                grp = k // per
                layer.weight[grp * in_per : (grp + 1) * in_per, k % per] = 0
        elif isinstance(layer, nn.Conv2d):
            layer.weight[idxs] = 0
        elif isinstance(layer, nn.BatchNorm2d):
            if layer.affine:
                layer.weight[idxs] = 0
                layer.bias[idxs] = 0
            else:  # y = (x - mean) / std: a zero input must map to zero
                layer.running_mean[idxs] = 0
        elif isinstance(layer, nn.PReLU):
            return
        if not isinstance(layer, nn.BatchNorm2d) and getattr(layer, "bias", None) is not None:
            layer.bias[idxs] = 0


@dataclass
class _GraphCut(Cut):
    """A torch-pruning group: every layer coupled to one set of channels."""

    graph: Any  # torch_pruning DependencyGraph
    root: nn.Module  # the layer whose output channels define the group
    handler: Any  # torch-pruning's pruning function for the root
    idxs: list[int]  # the root's output channels to remove
    description: str = ""
    removed: int = 0

    def _group(self) -> Any:
        # Asked again at each use: after other cuts the offsets of concatenated channels
        # in the consumers have moved, and the graph recomputes them here. The root's own
        # indices never move (no other cut touches its outputs).
        return self.graph.get_pruning_group(self.root, self.handler, idxs=self.idxs)

    def kill(self) -> None:
        for dep, idxs in self._group():
            fn = getattr(dep.handler, "__name__", "")
            if "out_channels" in fn:
                _zero_out_channels(dep.target.module, list(idxs))

    def apply(self) -> None:
        self._group().prune()


def _shuffle_pos(k: int, c: int, g: int) -> int:
    """Where ChannelShuffle(g) sends channel ``k`` of ``c``."""
    n = c // g
    return (k % n) * g + k // n


@dataclass
class _ConvModuleCut(Cut):
    """The inner channels of a grouped (optionally shuffled) Conv-module, pw1 -> pw2."""

    module: nn.Module  # edgeseg.layers.ConvModule
    members: list[int]  # members j removed from every pw1 group
    description: str = ""
    removed: int = 0
    _pw1_out: list[int] = field(default_factory=list)
    _mid: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.module
        c, g = m.pw1.out_channels, m.pw1.groups
        n = c // g
        shuffled = not isinstance(m.shuffle, nn.Identity)
        self._pw1_out = sorted(i * n + j for i in range(g) for j in self.members)
        self._mid = sorted(_shuffle_pos(k, c, g) if shuffled else k for k in self._pw1_out)
        self.removed = len(self._pw1_out)

    def kill(self) -> None:
        m = self.module
        _zero_out_channels(m.pw1, self._pw1_out)
        _zero_out_channels(m.bn2, self._pw1_out)
        _zero_out_channels(m.dw2, self._mid)
        _zero_out_channels(m.bn3, self._mid)

    def apply(self) -> None:
        m = self.module
        c, g = m.pw1.out_channels, m.pw1.groups
        keep_out = [k for k in range(c) if k not in set(self._pw1_out)]
        keep_mid = [k for k in range(c) if k not in set(self._mid)]
        c2 = len(keep_out)
        with torch.no_grad():
            pw1 = nn.Conv2d(m.pw1.in_channels, c2, 1, groups=g, bias=True)
            pw1.weight.copy_(m.pw1.weight[keep_out])
            pw1.bias.copy_(m.pw1.bias[keep_out])
            m.pw1 = pw1
            m.bn2 = _bn_subset(m.bn2, keep_out)
            dw2 = nn.Conv2d(
                c2, c2, 3, padding=m.dw2.padding, dilation=m.dw2.dilation, groups=c2, bias=True
            )
            dw2.weight.copy_(m.dw2.weight[keep_mid])
            dw2.bias.copy_(m.dw2.bias[keep_mid])
            m.dw2 = dw2
            m.bn3 = _bn_subset(m.bn3, keep_mid)
            # pw2 (out, in/g, 1, 1): each output group reads its own slice of the inputs.
            out, n_in, n_in2 = m.pw2.out_channels, c // g, c2 // g
            pw2 = nn.Conv2d(c2, out, 1, groups=g, bias=True)
            per_out = out // g
            for q in range(g):
                local = [k - q * n_in for k in keep_mid if q * n_in <= k < (q + 1) * n_in]
                assert len(local) == n_in2, "unequal cut across pw2's groups"
                rows = slice(q * per_out, (q + 1) * per_out)
                pw2.weight[rows] = m.pw2.weight[rows][:, local]
            pw2.bias.copy_(m.pw2.bias)
            m.pw2 = pw2


def _bn_subset(bn: nn.BatchNorm2d, keep: list[int]) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        new.running_mean.copy_(bn.running_mean[keep])  # type: ignore[index]
        new.running_var.copy_(bn.running_var[keep])  # type: ignore[index]
        new.num_batches_tracked.copy_(bn.num_batches_tracked)  # type: ignore[arg-type]
    return new.train(bn.training)


def _n_cut(channels: int, ratio: float, round_to: int) -> int:
    """Channels to remove so that about ``ratio`` goes and ``round_to`` divides the rest."""
    keep = max(1, channels - round(channels * ratio))
    if round_to > 1 and keep > round_to:
        keep = max(round_to, math.floor(keep / round_to + 0.5) * round_to)
    return max(0, channels - keep)


def _grouped_conv_modules(model: nn.Module) -> list[nn.Module]:
    from edgeseg.layers.conv_module import ConvModule

    return [m for m in model.modules() if isinstance(m, ConvModule) and m.pw1.groups > 1]


def plan_pruning(
    model: nn.Module,
    ratio: float,
    example: torch.Tensor,
    *,
    round_to: int = 1,
    keep_layers: tuple[nn.Module, ...] = (),
) -> list[Cut]:
    """The cuts that remove about ``ratio`` of the channels of every prunable layer.

    Args:
        model: the network (not changed until the cuts are applied).
        ratio: fraction of channels to remove in each coupled group, in ``[0, 1)``.
        example: an input batch ``(B, C, H, W)`` to trace the graph.
        round_to: keep a multiple of this many channels where there are more.
        keep_layers: layers whose channels stay (the classifier always does).

    Returns:
        Cuts in graph order; apply all of them (or :func:`prune_channels` does).

    Raises:
        EdgesegError: a ratio outside ``[0, 1)``, or a model torch-pruning cannot trace.
    """
    if not 0 <= ratio < 1:
        raise EdgesegError(f"--ratio {ratio}: the fraction of channels to remove must be in [0, 1)")
    import torch_pruning as tp

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if not convs:
        raise EdgesegError("this model has no convolutions to prune")
    # The classifier's outputs are the classes; the stem's inputs are the image channels
    # (torch-pruning never cuts network inputs).
    keep = {convs[-1], *keep_layers}
    if convs[0].groups > 1:  # a depthwise stem (SegFast) ties its outputs to the image's
        keep.add(convs[0])
    frozen: set[nn.Module] = set()
    inner = _grouped_conv_modules(model)
    for cm in inner:
        frozen |= {cm.dw1, cm.bn1, cm.pw1, cm.bn2, cm.dw2, cm.bn3, cm.pw2, cm.bn4}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # torch-pruning traces through autograd
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as e:  # tracing errors come in many types
        raise EdgesegError(f"cannot trace the model for pruning: {e}") from None
    finally:
        model.train(was_training)
    cuts = _graph_cuts(graph, ratio, round_to, keep, frozen)
    return cuts + [c for cm in inner if (c := _inner_cut(cm, ratio)) is not None]


def _graph_cuts(
    graph: Any, ratio: float, round_to: int, keep: set[nn.Module], frozen: set[nn.Module]
) -> list[Cut]:
    """Cuts of torch-pruning's coupled groups, by L1 magnitude."""
    import torch_pruning as tp

    importance = tp.importance.GroupMagnitudeImportance(p=1)
    cuts: list[Cut] = []
    roots = (nn.Conv2d, nn.ConvTranspose2d)
    for group in graph.get_all_groups(ignored_layers=list(keep), root_module_types=roots):
        mods = {dep.target.module for dep, _ in group}
        if mods & frozen or mods & keep:
            continue
        # Depthwise/grouped convs tie groups of channels that the graph tool does not split
        # evenly: leave those groups (the grouped Conv-modules are cut by _inner_cut).
        if any(isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels for m in mods):
            continue
        channels = len(group[0][1])
        n = _n_cut(channels, ratio, round_to)
        scores = importance(group) if n else None
        if scores is None:
            continue
        idxs = torch.argsort(scores)[:n].tolist()
        dep0 = group[0][0]
        desc = f"{dep0.target.name}: -{n}/{channels}"
        cuts.append(_GraphCut(graph, dep0.target.module, dep0.handler, sorted(idxs), desc, n))
    return cuts


def _inner_cut(cm: nn.Module, ratio: float) -> Cut | None:
    """The cut of a grouped Conv-module's inner channels (whole shuffle blocks), or None."""
    c, g = cm.pw1.out_channels, cm.pw1.groups
    n = c // g
    if n % g:  # the members feeding one pw2 group are not a whole block: leave it
        return None
    block = n // g
    r = _n_cut(block, ratio, 1)
    if r == 0:
        return None
    # Score member j by the L1 norm of pw1's rows i*n + j over every group i.
    w = cm.pw1.weight.detach().abs().flatten(1).sum(1).view(g, n).sum(0)
    members = []
    for q in range(g):
        order = torch.argsort(w[q * block : (q + 1) * block])[:r]
        members += [q * block + int(j) for j in order]
    return _ConvModuleCut(cm, sorted(members), f"conv-module inner: -{r * g * g}/{c}")


def prune_channels(
    model: nn.Module,
    ratio: float,
    example: torch.Tensor,
    *,
    round_to: int = 1,
    before_apply: Callable[[list[Cut]], None] | None = None,
) -> dict[str, Any]:
    """Remove about ``ratio`` of the channels of ``model`` in place.

    Args:
        model: the network; it keeps its class and forward, its layers get narrower.
        ratio: fraction of channels to remove per coupled group, in ``[0, 1)``.
        example: an input to trace the graph, ``(1, C, H, W)``.
        round_to: keep a multiple of this many channels where there are more.
        before_apply: called with the planned cuts before they are applied.

    Returns:
        ``{"params_before", "params_after", "cuts": [descriptions]}``.
    """
    before = sum(p.numel() for p in model.parameters())
    cuts = plan_pruning(model, ratio, example, round_to=round_to)
    if before_apply is not None:
        before_apply(cuts)
    for cut in cuts:
        cut.apply()
    after = sum(p.numel() for p in model.parameters())
    cfg = getattr(model, "edgeseg_config", None)
    if isinstance(cfg, dict):
        cfg["pruned"] = True
    log.info("pruned %d channel groups: %d -> %d parameters", len(cuts), before, after)
    return {"params_before": before, "params_after": after, "cuts": [c.description for c in cuts]}


def resize_to_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Narrow ``model``'s layers to the shapes in a pruned model's ``state`` (in place).

    Convs, transposed convs, BatchNorms and PReLUs whose saved shapes differ are rebuilt
    with the saved widths (depthwise convs stay depthwise; grouped convs keep ``groups``),
    so a pruned checkpoint loads into the architecture it was cut from.
    """
    for name, mod in list(model.named_modules()):
        key = f"{name}.weight" if name else "weight"
        if key not in state:
            key = f"{name}.running_mean" if name else "running_mean"
            if key not in state:
                continue
        shape = tuple(state[key].shape)
        new: nn.Module | None = None
        if isinstance(mod, nn.Conv2d) and tuple(mod.weight.shape) != shape:
            out, in_g = shape[0], shape[1]
            depthwise = mod.groups == mod.in_channels and mod.groups > 1
            groups = out if depthwise else mod.groups
            new = nn.Conv2d(
                in_g * groups,
                out,
                mod.kernel_size,
                mod.stride,
                mod.padding,
                mod.dilation,
                groups,
                mod.bias is not None,
            )
        elif isinstance(mod, nn.ConvTranspose2d) and tuple(mod.weight.shape) != shape:
            inp, out_g = shape[0], shape[1]
            depthwise = mod.groups == mod.in_channels and mod.groups > 1
            groups = inp if depthwise else mod.groups
            new = nn.ConvTranspose2d(
                inp,
                out_g * groups,
                mod.kernel_size,
                mod.stride,
                mod.padding,
                mod.output_padding,
                groups,
                mod.bias is not None,
                mod.dilation,
            )
        elif isinstance(mod, nn.BatchNorm2d) and mod.num_features != shape[0]:
            new = nn.BatchNorm2d(shape[0], mod.eps, mod.momentum, mod.affine)
        elif isinstance(mod, nn.PReLU) and tuple(mod.weight.shape) != shape:
            new = nn.PReLU(shape[0])
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new)
    return model
