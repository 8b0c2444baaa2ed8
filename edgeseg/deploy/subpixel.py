"""Transposed convolutions rewritten as convolution + pixel shuffle, for int8 runtimes.

Neither ONNX Runtime nor oneDNN (PT2E) has a CPU int8 ``ConvTranspose``: quantized
decoders run their upsampling layers in fp32, wrapped in dequantize/quantize steps. A
transposed convolution with stride ``s`` is exactly a plain convolution producing ``s*s``
phases per output channel followed by ``PixelShuffle(s)`` (the sub-pixel convolution of
Shi et al., 2016), and a plain convolution *has* int8 kernels. Output pixel
``y[s*i + a]`` of ``ConvTranspose(k, s, p)`` sums the inputs ``x[i + d]`` with kernel tap
``kh = a + p - s*d`` (``0 <= kh < k``), so phase ``a`` is a convolution over a small
window of offsets ``d``; stacking the phases as output channels and shuffling them into
space gives the same tensor. Zero taps (where ``kh`` is out of range for one phase but not
another) make the rewrite cost ``(window * s / k)^2`` times the MACs (16/9 for the common
``k=3, s=2``, 1 for ``k=s``), which int8 repays.

The phases are stacked phase-major (L3U-Net's fold order) and put into space by
:func:`edgeseg.layers.fold.unfold`, one channels-last move: ONNX Runtime's int8 convs hold
activations NHWC, and there ``nn.PixelShuffle`` (``DepthToSpace``) costs two layout
transposes and a 6-D one (U-Net int8 at 360x480, 2 threads: 895 -> 816 ms).

Where one conv would hold zero taps (``k=3, s=2``), the transposed conv becomes one conv
per phase instead (:class:`PhaseConvTranspose2d`), each cut to the taps its phase reads,
their outputs concatenated phase-major: the transposed conv's own MACs, for a concat that
ORT's int8 runs as a copy. SegFast-Basic int8 at 360x480, 2 threads: 68 -> 58 ms (its
upsamplers are half its MACs). A *depthwise* transposed conv is always split: as one conv
its ``s*s`` outputs per input channel would make a grouped conv with channel multiplier
``s*s``, which ORT runs through a slow generic path, while depthwise convs with
multiplier 1 have a dedicated int8 kernel. SegFast int8: 44 -> 35 ms (its three
upsamplers left the fp32 ``ConvTranspose``).

:func:`subpixel_deconvs` returns a copy of a model with every eligible
``nn.ConvTranspose2d`` replaced; outputs are equal to float rounding (tested), so the
result exports and quantizes like any convnet.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.fold import Unfold

__all__ = ["PhaseConvTranspose2d", "SubPixelConvTranspose2d", "subpixel_deconvs"]

log = logging.getLogger(__name__)


def _window(k: int, s: int, p: int, op: int) -> tuple[int, int, int, int]:
    """``(d_lo, d_hi, extra, crop)`` for one spatial dimension.

    ``d`` ranges over the input offsets any phase reads; ``extra`` input positions are
    appended so that ``s * (L + extra)`` covers the transposed conv's output length
    ``(L - 1) * s - 2p + k + op``, and ``crop`` trailing outputs are dropped after the
    shuffle (both are independent of ``L``).
    """
    offsets = [d for a in range(s) for d in range(-k, k + 1) if 0 <= a + p - s * d < k]
    d_lo, d_hi = min(offsets), max(offsets)
    extra = max(0, math.ceil((k + op - 2 * p - s) / s))
    crop = s * extra + s + 2 * p - k - op
    return d_lo, d_hi, extra, crop


def _taps(k: int, s: int, p: int, a: int, d_lo: int, d_hi: int) -> list[tuple[int, int]]:
    """``(offset d, kernel tap)`` pairs feeding output phase ``a``: tap ``a + p - s*d``."""
    return [(d, a + p - s * d) for d in range(d_lo, d_hi + 1) if 0 <= a + p - s * d < k]


def _has_zero_taps(t: nn.ConvTranspose2d) -> bool:
    """Whether one conv for all phases would hold zero taps (some phase reads fewer)."""
    s = t.stride[0]
    for k, p, op in zip(t.kernel_size, t.padding, t.output_padding, strict=True):
        lo, hi, _, _ = _window(k, s, p, op)
        if any(len(_taps(k, s, p, a, lo, hi)) < hi - lo + 1 for a in range(s)):
            return True
    return False


def _eligible(t: nn.ConvTranspose2d) -> None:
    """Raise ``ValueError`` if ``t`` is outside what the rewrites handle."""
    if t.dilation != (1, 1) or t.stride[0] != t.stride[1] or not isinstance(t.padding[0], int):
        raise ValueError("only dilation 1 and equal strides are rewritten")


def _crop(y: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    ch, cw = crop
    if not (ch or cw):
        return y
    # A copy, not a view: the layer after is often an in-place ReLU, and an in-place op
    # on a slice exports as slice_scatter (ScatterND + Transposes in ONNX), which made
    # SegFast-Basic's int8 graph 4x slower. The copy is an Identity in the export.
    return y[:, :, : y.shape[2] - ch, : y.shape[3] - cw].clone()


class SubPixelConvTranspose2d(nn.Module):
    """``nn.ConvTranspose2d`` (dilation 1) computed as pad -> Conv2d -> unfold -> crop.

    Stride 1 transposed convs (Squeeze U-Net's decoder fire modules) become plain convs.

    Build it with :meth:`from_conv_transpose`; ``forward`` maps ``(B, Cin, H, W)`` to the
    transposed conv's ``(B, Cout, H_out, W_out)``. ``phase_major`` says how the conv's
    ``Cout*s*s`` outputs are ordered: phase-major, put into space by ``unfold`` (ungrouped
    convs), or channel-major, by ``nn.PixelShuffle`` (grouped ones, whose output channels
    must stay in their group's block).
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        stride: int,
        pad: tuple[int, int, int, int],
        crop: tuple[int, int],
        phase_major: bool = True,
    ) -> None:
        super().__init__()
        self.conv = conv  # (B, Cin, H+pads, W+pads) -> (B, Cout*s*s, H+extra, W+extra)
        # An elementwise activation taken from after the layer (subpixel_deconvs does):
        # applied before the shuffle and crop, it fuses into the (int8) conv, and what
        # follows moves already-activated data (uint8 with one scale through ONNX Runtime).
        self.act: nn.Module = nn.Identity()
        # Stride 1: a transposed conv is a plain conv with a flipped kernel; nothing to shuffle.
        # Grouped convs keep each group's channels together, so their phases are
        # channel-major, the order nn.PixelShuffle reads.
        self.shuffle: nn.Module = nn.Identity()
        if stride > 1:
            self.shuffle = Unfold(stride) if phase_major else nn.PixelShuffle(stride)
        self.pad = pad  # F.pad order: (left, right, top, bottom)
        self.crop = crop  # trailing rows, columns to drop after the shuffle

    @classmethod
    def from_conv_transpose(cls, t: nn.ConvTranspose2d) -> SubPixelConvTranspose2d:
        """The equivalent module, weights copied (raises ``ValueError`` if not eligible)."""
        _eligible(t)
        (kh, kw), s = t.kernel_size, t.stride[0]
        (ph, pw), (oh, ow) = t.padding, t.output_padding
        g = t.groups
        hlo, hhi, hx, hc = _window(kh, s, ph, oh)
        wlo, whi, wx, wc = _window(kw, s, pw, ow)
        if hlo > 0 or wlo > 0:
            raise ValueError("padding larger than the kernel reach is not rewritten")
        cin, cout_g = t.in_channels, t.out_channels // g
        win_h, win_w = hhi - hlo + 1, whi - wlo + 1
        conv = nn.Conv2d(
            cin, t.out_channels * s * s, (win_h, win_w), groups=g, bias=t.bias is not None
        )
        cin_g = cin // g
        # Transposed weight (Cin, Cout/g, kh, kw) seen per group: (g, Cin/g, Cout/g, kh, kw);
        # the conv's (Cout*s*s, Cin/g, win_h, win_w) built as (g, Cout/g, s, s, Cin/g, ...):
        # channel o*s*s + a*s + b is phase (a, b) of channel o (nn.PixelShuffle's order);
        # ungrouped, permuted to (s, s, Cout, ...): channel (a*s + b)*Cout + o (unfold's).
        w = t.weight.detach().reshape(g, cin_g, cout_g, kh, kw)
        new = torch.zeros(g, cout_g, s, s, cin_g, win_h, win_w, dtype=w.dtype)
        for a in range(s):
            for dh, th in _taps(kh, s, ph, a, hlo, hhi):  # kernel row th reads offset dh
                for b in range(s):
                    for dw, tw in _taps(kw, s, pw, b, wlo, whi):
                        new[:, :, a, b, :, dh - hlo, dw - wlo] = w[:, :, :, th, tw].transpose(1, 2)
        if g == 1:
            new = new.permute(2, 3, 0, 1, 4, 5, 6)
        with torch.no_grad():
            conv.weight.copy_(new.reshape(conv.weight.shape))
            if t.bias is not None:
                b = t.bias.detach()
                conv.bias.copy_(b.repeat(s * s) if g == 1 else b.repeat_interleave(s * s))
        return cls(conv, s, (-wlo, whi + wx, -hlo, hhi + hx), (hc, wc), phase_major=g == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _crop(self.shuffle(self.act(self.conv(F.pad(x, self.pad)))), self.crop)


class PhaseConvTranspose2d(nn.Module):
    """An ``nn.ConvTranspose2d`` (dilation 1) as ``s*s`` convs, one per output phase.

    Phase ``(a, b)`` (output pixels ``(s*i + a, s*j + b)``) is a conv, with the transposed
    conv's groups, over the input offsets whose kernel taps feed that phase, and nothing
    else: for ``k=3, s=2, p=1`` (SegFast's and ERFNet's upsamplers) the phases are 1x1,
    1x2, 2x1 and 2x2 convs, 9 taps in all, the transposed conv's own MACs. Their outputs
    are concatenated phase-major and put into space by one
    :func:`~edgeseg.layers.fold.unfold`, then cropped to the transposed conv's size.
    Stride 1 is a single conv with the kernel flipped.

    Build it with :meth:`from_conv_transpose`; ``forward`` maps ``(B, Cin, H, W)`` to the
    transposed conv's ``(B, Cout, H_out, W_out)``.
    """

    def __init__(
        self,
        phases: list[nn.Conv2d],
        pads: list[tuple[int, int, int, int]],
        stride: int,
        crop: tuple[int, int],
    ) -> None:
        super().__init__()
        # Phase (a, b) at index a*s + b: (B, C, H+pads, W+pads) -> (B, C, H+extra, W+extra).
        self.phases = nn.ModuleList(phases)
        self.pads = pads  # per phase, F.pad order (left, right, top, bottom)
        self.act: nn.Module = nn.Identity()  # as SubPixelConvTranspose2d.act
        self.shuffle: nn.Module = Unfold(stride) if stride > 1 else nn.Identity()
        self.crop = crop  # trailing rows, columns to drop after the shuffle

    @classmethod
    def from_conv_transpose(cls, t: nn.ConvTranspose2d) -> PhaseConvTranspose2d:
        """The equivalent module, weights copied (raises ``ValueError`` if not eligible)."""
        _eligible(t)
        (kh, kw), s = t.kernel_size, t.stride[0]
        (ph, pw), (oh, ow) = t.padding, t.output_padding
        hlo, hhi, hx, hc = _window(kh, s, ph, oh)
        wlo, whi, wx, wc = _window(kw, s, pw, ow)
        g, cin, cout = t.groups, t.in_channels, t.out_channels
        # Transposed weight (Cin, Cout/g, kh, kw) as the conv's (Cout, Cin/g, kh, kw):
        # per group, swap the in and out channel axes (depthwise: (C, 1, kh, kw) as is).
        w = t.weight.detach().reshape(g, cin // g, cout // g, kh, kw).transpose(1, 2)
        w = w.reshape(cout, cin // g, kh, kw)
        phases, pads = [], []
        for a in range(s):
            rows = _taps(kh, s, ph, a, hlo, hhi)
            # The conv's window spans the phase's offsets and 0, so that both pads are >= 0.
            r0, r1 = min([0, *(d for d, _ in rows)]), max([0, *(d for d, _ in rows)])
            for b in range(s):
                cols = _taps(kw, s, pw, b, wlo, whi)
                c0, c1 = min([0, *(d for d, _ in cols)]), max([0, *(d for d, _ in cols)])
                conv = nn.Conv2d(
                    cin, cout, (r1 - r0 + 1, c1 - c0 + 1), groups=g, bias=t.bias is not None
                )
                k = torch.zeros_like(conv.weight)  # (Cout, Cin/g, rows, cols)
                for dh, th in rows:
                    for dw, tw in cols:
                        k[:, :, dh - r0, dw - c0] = w[:, :, th, tw]
                with torch.no_grad():
                    conv.weight.copy_(k)
                    if t.bias is not None:
                        conv.bias.copy_(t.bias)
                phases.append(conv)
                pads.append((-c0, c1 + wx, -r0, r1 + hx))
        return cls(phases, pads, s, (hc, wc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [
            self.act(conv(F.pad(x, p) if any(p) else x))
            for conv, p in zip(self.phases, self.pads, strict=True)
        ]
        y = torch.cat(ys, 1) if len(ys) > 1 else ys[0]  # (B, s*s*C, H', W'), phase-major
        return _crop(self.shuffle(y), self.crop)


def _absorb_relu(
    seq: nn.Sequential, name: str, sub: SubPixelConvTranspose2d | PhaseConvTranspose2d
) -> None:
    """Move the ReLU after ``seq[name]`` (Identities in between) into ``sub``."""
    keys = list(seq._modules)
    for key in keys[keys.index(name) + 1 :]:
        nxt = seq._modules[key]
        if isinstance(nxt, nn.Identity):
            continue
        if type(nxt) is nn.ReLU:
            sub.act = nn.ReLU(inplace=True)
            seq._modules[key] = nn.Identity()
        return


def subpixel_deconvs(
    model: nn.Module,
    *,
    grouped: bool = False,
    undersized: bool = False,
    min_channels: int = 16,
    only_depthwise: bool = False,
) -> tuple[nn.Module, int]:
    """A copy of ``model`` with every eligible ``nn.ConvTranspose2d`` rewritten.

    Args:
        model: the network.
        grouped: also rewrite grouped transposed convs that are not depthwise. Off by
            default: their conv has several outputs per group, which ONNX Runtime's int8
            runs through a generic grouped path slower than the fp32 transposed conv (as
            one such conv, SegFast's depthwise upsamplers took its int8 model from 88 to
            144 ms at 360x480). Depthwise ones (``groups == in == out channels``) are
            always rewritten, as :class:`PhaseConvTranspose2d`, and so are ungrouped ones
            whose single conv would hold zero taps (:func:`_has_zero_taps`).
        undersized: also rewrite transposed convs whose kernel is smaller than their
            stride. Off by default: most of their phases are all-zero filters, so the conv
            would do ``s*s`` times the work of the transposed one for nothing (ESSNet's 1x1
            stride-2 upsamplers, below).
        min_channels: transposed convs with fewer output channels stay as they are.
            A classifier upsampling logits (``16 -> K`` at full resolution) gains nothing
            from int8, and the pixel shuffle of its output costs more than the fp32
            transposed conv. ESSNet at 360x480, int8: 39 ms with none of its three
            transposed convs rewritten, 48 ms with the two 1x1 ones, 55 ms with all three.
        only_depthwise: rewrite the depthwise transposed convs alone (what every fp32
            export does: :func:`edgeseg.deploy.export.export_onnx`).

    Returns:
        ``(copy, number of layers rewritten)``; the original model is untouched.

    A ReLU that follows a rewritten layer in its ``nn.Sequential`` (after any
    ``nn.Identity`` left by BatchNorm folding) moves inside it, before the pixel shuffle
    and crop: it commutes with both, and there it fuses into the int8 conv instead of
    re-quantizing the cropped tensor (SegFast-Basic's decoder).
    """
    m = copy.deepcopy(model)
    n = 0
    for parent in list(m.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.ConvTranspose2d:
                continue
            depthwise = child.groups == child.in_channels == child.out_channels
            kinds = depthwise if only_depthwise else (grouped or depthwise or child.groups == 1)
            if (
                kinds
                and child.out_channels >= min_channels
                and (undersized or min(child.kernel_size) >= max(child.stride))
            ):
                split = depthwise or (child.groups == 1 and _has_zero_taps(child))
                kind = PhaseConvTranspose2d if split else SubPixelConvTranspose2d
                try:
                    sub = kind.from_conv_transpose(child)
                except ValueError as e:
                    log.info("kept %s as ConvTranspose2d: %s", name, e)
                    continue
                setattr(parent, name, sub)
                n += 1
                if isinstance(parent, nn.Sequential):
                    _absorb_relu(parent, name, sub)
    return m, n
