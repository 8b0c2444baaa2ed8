"""Inference-time settings that change speed, never outputs.

- :func:`fold_batchnorm` folds every eval-mode BatchNorm into the conv or transposed conv
  just before it (what ONNX Runtime, TorchScript freezing and Inductor do too), so eager
  timings are those of the network a deployment runs.
- :func:`fuse_folding` merges L3U-Net's data folding into the 1x1 conv after it: a fold
  followed by a 1x1 conv is one ``r x r`` stride-``r`` conv on the unfolded input. Exact;
  it removes a full-resolution 6-D permute. (The unfold at the end needs no rewrite: it is
  written as one channels-last move, see :func:`edgeseg.layers.fold.unfold`.)
- :func:`inference_graph` applies both rewrites: the network every fast backend runs.
- :func:`tune_malloc` keeps freed memory inside the process. glibc's default gives large
  blocks back to the OS at every ``free`` and page-faults them in again at the next
  allocation; for a segmentation network whose full-resolution activations are tens of MB
  that is 20-30 % of a CPU forward pass on a 2-core machine. Intel's PyTorch CPU guide
  recommends jemalloc/tcmalloc for the same reason; this does it with glibc, at run time.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "fold_batchnorm",
    "fuse_folding",
    "inference_graph",
]

log = logging.getLogger(__name__)

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _fold_grouped_transpose(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.ConvTranspose2d:
    # torch's helper scales weight dim 1 as if it were the output channel, which is only
    # true for groups == 1. A grouped transposed weight is (Cin, Cout/g, kh, kw) and output
    # channel g*(Cout/g) + j is fed by input channels of group g only.
    fused = copy.deepcopy(conv)
    g = conv.groups
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (Cout,)
    shift = bn.bias - bn.running_mean * scale
    w = conv.weight  # (Cin, Cout/g, kh, kw)
    cin, cpg = w.shape[0], w.shape[1]
    w = w.view(g, cin // g, cpg, *w.shape[2:]) * scale.view(g, 1, cpg, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.weight = nn.Parameter(w.reshape_as(conv.weight).detach().clone())
    fused.bias = nn.Parameter((bias * scale + shift).detach().clone())
    return fused


@torch.no_grad()
def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold each BatchNorm2d that directly follows a conv in an ``nn.Sequential`` into it.

    Most edgeseg blocks are built as ``Sequential(conv, norm, act)``; a block whose
    BatchNorm sits elsewhere provides a ``fold_batchnorm()`` method returning its folded
    equivalent (ERFNet's :class:`~edgeseg.layers.erfnet_blocks.Downsampler`), which is
    called here. Norms inside custom ``forward`` code that follow a conv (ERFNet's
    residual blocks) are left to the exporters, which fold them too. The model must be in
    eval mode (running statistics are used). Outputs are unchanged up to float rounding.

    Args:
        model: the network (in eval mode).
        inplace: change ``model`` itself instead of a deep copy.

    Returns:
        The model with the BatchNorms replaced by ``nn.Identity``.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval())")
    model = model if inplace else copy.deepcopy(model)
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if not (isinstance(conv, _CONVS) and type(bn) is nn.BatchNorm2d):
                continue
            if bn.running_mean is None:  # track_running_stats=False: batch statistics
                continue
            transpose = isinstance(conv, nn.ConvTranspose2d)
            if transpose and conv.groups > 1:
                seq._modules[a] = _fold_grouped_transpose(conv, bn)
            else:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
            seq._modules[b] = nn.Identity()
            folded += 1
    # Blocks whose BatchNorm does not directly follow a conv fold it themselves
    # (ERFNet's downsampler normalises a concat of a conv and a max-pool).
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if callable(getattr(child, "fold_batchnorm", None)):
                setattr(parent, name, child.fold_batchnorm())
                folded += 1
    log.debug("folded %d BatchNorm layers", folded)
    return model


def _is_pointwise(conv: nn.Module) -> bool:
    """A plain 1x1 conv: stride 1, no padding, no groups, no dilation."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
    )


def _fold_into_conv(conv: nn.Conv2d, r: int) -> nn.Conv2d:
    # fold puts x[c, r*h + i, r*w + j] in channel (i*r + j)*C + c at (h, w), so a 1x1
    # weight W[o, (i*r + j)*C + c] is the tap (i, j) of an r x r stride-r conv.
    c = conv.in_channels // (r * r)
    strided = nn.Conv2d(c, conv.out_channels, r, stride=r, bias=conv.bias is not None)
    w = conv.weight.view(conv.out_channels, r, r, c)  # (O, i, j, C)
    strided.weight.copy_(w.permute(0, 3, 1, 2))  # (O, C, i, j)
    if conv.bias is not None:
        strided.bias.copy_(conv.bias)
    return strided.to(conv.weight.dtype)


@torch.no_grad()
def fuse_folding(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Merge each :class:`~edgeseg.layers.fold.Fold` into the 1x1 conv after it.

    In an ``nn.Sequential``, ``Fold(r)`` followed by a module that starts with a plain 1x1
    conv becomes an ``r x r`` stride-``r`` conv on the unfolded input. Outputs are
    unchanged up to float rounding (tested); the data no longer goes through a
    full-resolution permute.

    Args:
        model: the network (any mode; no statistics are involved).
        inplace: change ``model`` itself instead of a deep copy.

    Returns:
        The model with the folds fused; ``model`` itself, not a copy, if it has none.
    """
    from edgeseg.layers.fold import Fold

    if not any(isinstance(m, Fold) for m in model.modules()):
        return model  # nothing to rewrite: no copy of a large network for nothing
    model = model if inplace else copy.deepcopy(model)
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for a, b in itertools.pairwise(list(seq._modules)):
            if not isinstance(seq._modules[a], Fold):
                continue
            # the first leaf of seq[b], descending into nested Sequentials
            parent, key = seq, b
            while isinstance(parent._modules[key], nn.Sequential) and len(parent._modules[key]):
                parent = parent._modules[key]
                key = next(iter(parent._modules))
            if _is_pointwise(parent._modules[key]):
                parent._modules[key] = _fold_into_conv(parent._modules[key], seq._modules[a].ratio)
                seq._modules[a] = nn.Identity()
                fused += 1
    log.debug("fused %d fold layers into convs", fused)
    return model


def inference_graph(model: nn.Module) -> nn.Module:
    """A copy of ``model`` as the fast backends run it: BatchNorm folded, folds fused.

    Exact rewrites only (:func:`fold_batchnorm`, :func:`fuse_folding`); the model must
    be in eval mode.
    """
    return fuse_folding(fold_batchnorm(model), inplace=True)
