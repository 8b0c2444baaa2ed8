"""ERFNet (Romera et al., T-ITS 2018), as in the authors' code and seed 002's thesis.

Architecture as data (``../shared/spec/ARCHITECTURES.md`` section 4)::

    encoder  DS(3, 16), DS(16, 64), 5 x nb(64, p=0.03), DS(64, 128),
             2 x [nb(128, p=0.3, d) for d in 2, 4, 8, 16]                       /8
    decoder  Up(128, 64), 2 x nb(64), Up(64, 16), 2 x nb(16),
             2x2 stride-2 transposed conv 16 -> K                               /1

Every conv keeps its bias and BatchNorm uses eps 1e-3, as in the authors' code.
Parameters: 2,064,256 at K = 20. The spec's 2,066,836 (the authors' code) also counts the
encoder's own 1x1 classifier 128 -> K (128K + K = 2,580 at K = 20), which that code holds
for its encoder-pretraining stage and never uses in the full network; edgeseg leaves the
dead layer out, so that every parameter gets a gradient. MACs at 512x1024, K = 20: 26.6 G.
Inputs are padded to a multiple of 8 and the logits cropped back (the authors' code needs
sizes divisible by 8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgeseg.layers.erfnet_blocks import Downsampler, NonBottleneck1D, Upsampler
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import register_model

#: Encoder rows: ("ds", in, out) or ("nb", channels, dropout, dilation).
ENCODER: tuple[tuple, ...] = (
    ("ds", 3, 16),
    ("ds", 16, 64),
    *(("nb", 64, 0.03, 1),) * 5,
    ("ds", 64, 128),
    *(("nb", 128, 0.3, d) for d in (2, 4, 8, 16)),
    *(("nb", 128, 0.3, d) for d in (2, 4, 8, 16)),
)
#: Decoder rows: ("up", in, out) or ("nb", channels, dropout, dilation).
DECODER: tuple[tuple, ...] = (
    ("up", 128, 64),
    *(("nb", 64, 0.0, 1),) * 2,
    ("up", 64, 16),
    *(("nb", 16, 0.0, 1),) * 2,
)


#: Row kind -> block constructor; families add their own kinds (see ``essnet.py``).
ROW_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "ds": Downsampler,
    "nb": NonBottleneck1D,
    "up": Upsampler,
}


def build_rows(
    rows: Sequence[tuple], blocks: dict[str, Callable[..., nn.Module]] | None = None
) -> nn.Sequential:
    """Layers from config rows ``(kind, *args)``; ``blocks`` maps kinds to constructors."""
    table = blocks or ROW_BLOCKS
    return nn.Sequential(*(table[kind](*args) for kind, *args in rows))


class ERFNet(SegmentationModel):
    """ERFNet. Stages: ``encoder``, ``decoder``, ``head`` (the final transposed conv).

    Args:
        num_classes: K.
        in_channels: input channels.
        encoder, decoder: rows (default ERFNet's; WSPD-Net passes its own).
        blocks: row kind -> block constructor (default :data:`ROW_BLOCKS`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        encoder: Sequence[tuple] = ENCODER,
        decoder: Sequence[tuple] = DECODER,
        blocks: dict[str, Callable[..., nn.Module]] | None = None,
    ) -> None:
        super().__init__()
        self.output_stride = 8
        rows = ((encoder[0][0], in_channels, encoder[0][2]), *encoder[1:])
        self.encoder = build_rows(rows, blocks)
        self.decoder = build_rows(decoder, blocks)
        self.head = nn.ConvTranspose2d(decoder[-1][1], num_classes, 2, stride=2, bias=True)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x)  # (B, 128, H/8, W/8)
        y = self.decoder(y)  # (B, 16, H/2, W/2)
        return self.head(y)  # (B, K, H, W)


@register_model(tags=("paper",))
def erfnet(num_classes: int, in_channels: int = 3) -> ERFNet:
    """ERFNet: 2,064,256 parameters at K = 20 (the authors' 2,066,836 less a dead classifier)."""
    return ERFNet(num_classes, in_channels)
