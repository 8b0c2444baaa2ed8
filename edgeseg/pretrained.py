"""Weights that ship inside the package, usable by name wherever a checkpoint is.

``edgeseg predict --model segfast_camvid street.png``, ``Segmenter("segfast_camvid")``,
``edgeseg eval erfnet_camvid --data ...`` and ``edgeseg compare --models
segfast=segfast_camvid`` all resolve the name to the packaged checkpoint; nothing is
downloaded. Each entry's recipe, training time and per-class accuracy are in the model
card, ``edgeseg/weights/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import CheckpointError

__all__ = [
    "PRETRAINED",
    "WEIGHTS_DIR",
    "Pretrained",
    "list_pretrained",
    "pretrained_path",
    "recommended",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Pretrained:
    """One set of shipped weights."""

    name: str  # what users type, e.g. "segfast_camvid"
    model: str  # the registered architecture
    dataset: str  # preset it was trained on
    file: str  # file name inside edgeseg/weights/
    recipe: str  # the training recipe in configs/
    # "float": the weights as trained; "int8": conv weights stored as int8 per output
    # channel (edgeseg.engine.checkpoint.compact_state), for a file that would pass 10 MB
    storage: str = "float"
    # val mIoU (CamVid val, 360x480) of the weights trained on the train split only: the
    # shipped file's or, for a train+val release, its train-only twin's (the model card)
    heldout_miou: float | None = None


PRETRAINED: dict[str, Pretrained] = {
    p.name: p
    for p in (
        Pretrained(
            "segfast_camvid",
            "segfast",
            "camvid",
            "segfast_camvid.pt",
            "configs/segfast_camvid.yaml",
            heldout_miou=0.533,
        ),
        Pretrained(
            "erfnet_camvid",
            "erfnet",
            "camvid",
            "erfnet_camvid.pt",
            "configs/erfnet_camvid.yaml",
            heldout_miou=0.619,
        ),
        Pretrained(
            "ddrnet_camvid",
            "ddrnet23_slim",
            "camvid",
            "ddrnet_camvid.pt",
            "configs/ddrnet_camvid.yaml",
            storage="int8",  # 5.7 M parameters: 22.8 MB in fp32
            heldout_miou=0.694,
        ),
        Pretrained(
            "squeeze_unet_camvid",
            "squeeze_unet",
            "camvid",
            "squeeze_unet_camvid.pt",
            "configs/squeeze_unet_camvid.yaml",
            storage="int8",  # 2.6 M parameters: 10.5 MB in fp32
            heldout_miou=0.452,
        ),
        Pretrained(
            "ppliteseg_lite0_camvid",
            "ppliteseg_efficientnet_lite0",
            "camvid",
            "ppliteseg_lite0_camvid.pt",
            "configs/ppliteseg_lite0_camvid.yaml",
            storage="int8",  # ImageNet EfficientNet-Lite0 encoder + PP-LiteSeg decoder
            heldout_miou=0.727,
        ),
    )
}


def recommended() -> str | None:
    """The shipped weights to start from: the highest held-out val mIoU installed."""
    have = [PRETRAINED[n] for n in list_pretrained() if PRETRAINED[n].heldout_miou]
    return max(have, key=lambda p: p.heldout_miou or 0.0).name if have else None


def list_pretrained() -> list[str]:
    """Names of the shipped weights present in this installation."""
    return sorted(n for n, p in PRETRAINED.items() if (WEIGHTS_DIR / p.file).is_file())


def pretrained_path(name: str) -> Path:
    """The packaged checkpoint of ``name``.

    Raises:
        CheckpointError: an unknown name, or weights missing from this installation.
    """
    if name not in PRETRAINED:
        raise CheckpointError(
            f"no shipped weights named {name!r} (shipped: {', '.join(sorted(PRETRAINED))})"
        )
    path = WEIGHTS_DIR / PRETRAINED[name].file
    if not path.is_file():
        raise CheckpointError(f"the weights {name!r} are not in this installation ({path})")
    return path
