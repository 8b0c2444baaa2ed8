"""PP-LiteSeg's decoder (Peng et al., *PP-LiteSeg: A Superior Real-Time Semantic
Segmentation Model*, 2022, sec. 3) on any encoder.

Three parts, read from the paper and PaddleSeg's ``PPLiteSegHead``:

- **SPPM** (simple pyramid pooling module) on the stride-32 map: pooled at three scales,
  each 1x1 conv-BN-ReLU to 128, upsampled and *summed* (not concatenated), then a 3x3
  conv-BN-ReLU to 128.
- **UAFM** (unified attention fusion module, spatial attention): the deeper decoder
  feature ``high`` is upsampled to the shallower encoder map ``low`` (1x3x3 conv-BN-ReLU to
  ``high``'s width); a 3x3 conv-BN-ReLU (4 -> 2) and a 3x3 conv-BN (2 -> 1) on the channel
  mean and max of both give ``alpha = sigmoid(.)``; ``out = conv3x3(high * alpha + low *
  (1 - alpha))``.
- **FLD** (flexible lightweight decoder): UAFMs at strides 32, 16 and 8 whose widths fall
  from deep to shallow (PP-LiteSeg-B's 128, 96, 64), and a segmentation head (3x3
  conv-BN-ReLU to 64, 1x1 to K) on the stride-8 output.

Deviation: the paper's SPPM uses adaptive pooling to 1x1, 2x2 and 4x4 bins; here the
global mean and fixed windows of 6 and 3 pixels of the stride-32 map (``ceil_mode``), which
give 2x3 and 4x5 bins at 360x480 input and export at any input size (adaptive pooling to
bins that do not divide the map does not).

Training only: the paper's deep supervision reads the two deeper fusion outputs (strides
16 and 32) through heads of the segmentation head's form (``train.aux_weight``); they live
outside the model, so inference and export are the plain decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.layers.conv import ConvNormAct

#: SPPM pooling windows in pixels of the stride-32 map (0: the global mean).
SPPM_WINDOWS = (0, 6, 3)
#: FLD: UAFM output widths at strides 8, 16, 32 (PP-LiteSeg-B).
FLD_WIDTHS = (64, 96, 128)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SPPM(nn.Module):
    """Simple pyramid pooling: ``(B, C, h, w) -> (B, out, h, w)``."""

    def __init__(
        self,
        channels: int,
        inter: int = 128,
        out: int = 128,
        windows: tuple[int, ...] = SPPM_WINDOWS,
    ) -> None:
        super().__init__()
        self.windows = windows
        self.levels = nn.ModuleList(ConvNormAct(channels, inter, 1) for _ in windows)
        self.out = ConvNormAct(inter, out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None
        for w, level in zip(self.windows, self.levels, strict=True):
            p = x.mean((2, 3), keepdim=True) if w == 0 else F.avg_pool2d(x, w, w, ceil_mode=True)
            p = _up(level(p), x)  # (B, inter, h, w)
            y = p if y is None else y + p
        return self.out(y)


class UAFM(nn.Module):
    """Unified attention fusion with spatial attention.

    ``low (B, c_low, H, W)`` from the encoder, ``high (B, c_high, H', W')`` from the deeper
    decoder stage -> ``(B, out, H, W)``.
    """

    def __init__(self, c_low: int, c_high: int, out: int) -> None:
        super().__init__()
        self.low = ConvNormAct(c_low, c_high, 3)
        self.attention = nn.Sequential(ConvNormAct(4, 2, 3), ConvNormAct(2, 1, 3, act=False))
        self.out = ConvNormAct(c_high, out, 3)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.low(low)  # (B, c_high, H, W)
        high = _up(high, low)
        stats = torch.cat(
            [
                low.mean(1, keepdim=True),
                low.amax(1, keepdim=True),
                high.mean(1, keepdim=True),
                high.amax(1, keepdim=True),
            ],
            dim=1,
        )
        alpha = torch.sigmoid(self.attention(stats))  # (B, 1, H, W)
        return self.out(high * alpha + low * (1 - alpha))


class PPLiteSegDecoder(nn.Module):
    """``feats (strides 4, 8, 16, 32) -> logits (B, K, H/8, W/8)``.

    Args:
        in_channels: the encoder's four widths (the stride-4 map is not read).
        num_classes: K.
        widths: UAFM output widths at strides 8, 16, 32.
        head: width of the segmentation head's 3x3 conv.
    """

    stride = 8

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, int, int] = FLD_WIDTHS,
        head: int = 64,
    ) -> None:
        super().__init__()
        self.widths, self.head_width, self.num_classes = widths, head, num_classes
        self.sppm = SPPM(in_channels[3])
        highs = (*widths[1:], 128)  # each UAFM's deeper input: the next one out, or SPPM's
        self.fuse = nn.ModuleList(UAFM(in_channels[i + 1], highs[i], widths[i]) for i in range(3))
        self.head = nn.Sequential(ConvNormAct(widths[0], head, 3), nn.Conv2d(head, num_classes, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.forward_taps(feats)[0]

    def forward_taps(
        self, feats: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``(B, K, H/8, W/8)`` and the deeper fusion outputs the auxiliary heads
        read: ``uafm32`` ``(B, widths[2], H/32, W/32)``, ``uafm16`` ``(B, widths[1], H/16,
        W/16)``."""
        taps = {}
        y = self.sppm(feats[3])  # (B, 128, H/32, W/32)
        for i in (2, 1, 0):  # strides 32, 16, 8
            y = self.fuse[i](feats[i + 1], y)
            taps[f"uafm{8 << i}"] = y
        del taps["uafm8"]  # the main head reads it
        return self.head(y), taps

    def aux_heads(self) -> nn.ModuleDict:
        """New training-only heads on the stride-32 and stride-16 fusion outputs, each the
        segmentation head's form (3x3 conv-BN-ReLU to its width, 1x1 to K)."""
        head, k = self.head_width, self.num_classes
        return nn.ModuleDict(
            {
                f"uafm{8 << i}": nn.Sequential(ConvNormAct(w, head, 3), nn.Conv2d(head, k, 1))
                for i, w in ((2, self.widths[2]), (1, self.widths[1]))
            }
        )
