"""Self-describing checkpoints: everything eval, predict and export need is inside.

A checkpoint is a ``torch.save`` dict (loadable with ``weights_only=True``)::

    format          "edgeseg.checkpoint", format_version 1
    edgeseg_version, torch_version
    model           {"name", "num_classes", "in_channels", "kwargs"}: create_model's inputs
    dataset         DatasetInfo.to_dict(): classes, palette, ignore_index, mean, std
    input_size      [H, W] the model was trained (cropped) at, or null
    state_dict      the weights (shipped weights may store each conv weight as int8:
                    ``compact_state``; loading restores floats)
    epoch, step     completed epochs / optimiser steps
    metrics         last validation metrics (miou, pixel_acc, mean_acc, iou{} ...)
    config          the training recipe as a dict (see edgeseg.config)
    train_state     only in ``last.pt``: optimizer, scheduler, RNG states of every rank,
                    best score, position inside an unfinished epoch

Writes go to a temporary file that is renamed over the target, so a crash never leaves a
truncated checkpoint.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from edgeseg.data.presets import DatasetInfo
from edgeseg.engine.hooks import checkpoint_adapter
from edgeseg.errors import CheckpointError, EdgesegError
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import atomic_write_bytes

__all__ = [
    "FORMAT",
    "build_model",
    "is_compressed_state",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "make_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

FORMAT = "edgeseg.checkpoint"
FORMAT_VERSION = 1


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


def make_checkpoint(
    model: nn.Module,
    info: DatasetInfo,
    *,
    input_size: tuple[int, int] | None = None,
    epoch: int = 0,
    step: int = 0,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict for ``model`` (built by ``create_model``).

    Raises:
        CheckpointError: if the model was not built by ``create_model`` (it cannot be
            rebuilt from a name then).
    """
    from edgeseg import __version__

    m = _unwrap(model)
    desc = getattr(m, "edgeseg_config", None)
    if desc is None:
        raise CheckpointError(
            f"{type(m).__name__} was not built by edgeseg.create_model; a checkpoint could "
            "not rebuild it"
        )
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edgeseg_version": __version__,
        "torch_version": str(torch.__version__),
        "model": dict(desc),
        "dataset": info.to_dict(),
        "input_size": list(input_size) if input_size else None,
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "epoch": int(epoch),
        "step": int(step),
        "metrics": metrics or {},
        "config": config or {},
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write ``ckpt`` atomically (temporary file, fsync, rename)."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a run directory's ``best.pt`` (else its ``last.pt``), or the
    packaged checkpoint of shipped weights named like ``segfast_camvid``.

    Raises:
        CheckpointError: nothing usable at ``path``.
    """
    p = Path(path)
    if not p.exists() and str(path) in PRETRAINED:
        return pretrained_path(str(path))
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"no best.pt or last.pt in run directory {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


#: Key suffixes of a weight stored as int8 (``compact_state``) and of its fp32 scales.
INT8_KEY, SCALE_KEY = "::int8", "::scale"


def compact_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights for shipping at a quarter of their size: every floating tensor of two or
    more dimensions (conv and linear weights) as symmetric int8 per output channel with an
    fp32 scale; norms and biases stay as they are. :func:`load_checkpoint` restores floats
    (each weight within half a quantization step, ``max |w| / 254`` of its channel)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not (v.is_floating_point() and v.dim() >= 2):
            out[k] = v
            continue
        scale = v.float().abs().flatten(1).amax(1).clamp_min(1e-12) / 127  # (C_out,)
        shaped = scale.view(-1, *([1] * (v.dim() - 1)))
        out[k + INT8_KEY] = torch.round(v.float() / shaped).clamp(-127, 127).to(torch.int8)
        out[k + SCALE_KEY] = scale
    return out


def expand_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float weights of a :func:`compact_state` dict (any other dict is returned as is)."""
    if not any(k.endswith(INT8_KEY) for k in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.endswith(INT8_KEY):
            name = k[: -len(INT8_KEY)]
            scale = state[name + SCALE_KEY]
            out[name] = v.float() * scale.view(-1, *([1] * (v.dim() - 1)))
        elif not k.endswith(SCALE_KEY):
            out[k] = v
    return out


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check an edgeseg checkpoint (file or run directory).

    Raises:
        CheckpointError: missing, unreadable, or not an edgeseg checkpoint.
    """
    p = resolve_checkpoint(path)
    if p.suffix.lower() == ".onnx":  # torch.load would say "Weights only load failed"
        raise CheckpointError(
            f"{p} is an ONNX file, not a checkpoint: `edgeseg bench {p} --data ROOT` scores it "
            "(mIoU per ONNX backend), `edgeseg predict` and `edgeseg-run` run it"
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        text = str(e).strip()
        first = text.splitlines()[0].split(". ")[0][:160] if text else type(e).__name__
        if "Weights only load failed" in text:  # a foreign pickle, or not a pickle at all
            first = "not a PyTorch file of plain tensors and data (edgeseg never unpickles code)"
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an edgeseg checkpoint (no '{FORMAT}' marker)")
    _check_schema(ckpt, p)
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {ckpt['format_version']}; this edgeseg reads up to "
            f"{FORMAT_VERSION}: upgrade edgeseg"
        )
    try:
        ckpt["state_dict"] = expand_state(ckpt["state_dict"])
    except KeyError as e:
        raise CheckpointError(f"{p} is not a valid edgeseg checkpoint: no scale {e}") from None
    ckpt["path"] = str(p)
    return ckpt


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_colour(c: Any) -> bool:
    return (
        isinstance(c, list | tuple)
        and len(c) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
    )


def _check_schema(ckpt: dict[str, Any], path: Path) -> None:
    """One line naming the first field of ``ckpt`` that is missing or of the wrong type."""

    def fail(what: str) -> NoReturn:
        raise CheckpointError(f"{path} is not a valid edgeseg checkpoint: {what}")

    if not isinstance(ckpt.get("format_version"), int):
        fail("format_version is not an integer")
    model, ds = ckpt.get("model"), ckpt.get("dataset")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        fail("model must be a mapping with a name")
    if not isinstance(model.get("num_classes"), int) or model["num_classes"] <= 0:
        fail("model.num_classes is not a positive integer")
    if not isinstance(model.get("kwargs") or {}, dict):
        fail("model.kwargs is not a mapping")
    if not isinstance(ds, dict):
        fail("dataset is missing")
    classes, palette = ds.get("classes"), ds.get("palette")
    if not isinstance(classes, list | tuple) or len(classes) != model["num_classes"]:
        fail(f"dataset.classes does not name the model's {model['num_classes']} classes")
    if not isinstance(palette, list | tuple) or len(palette) < len(classes):
        fail(f"dataset.palette has fewer than {len(classes)} colours")
    if not all(_is_colour(c) for c in palette):
        fail("dataset.palette holds a colour that is not 3 integers in 0..255")
    for key in ("mean", "std"):
        values = ds.get(key)
        if (
            not isinstance(values, list | tuple)
            or len(values) != 3
            or not all(_is_number(v) for v in values)
        ):
            fail(f"dataset.{key} is not 3 finite numbers")
    if not all(v > 0 for v in ds["std"]):
        fail("dataset.std must be positive (the input is divided by it)")
    if not isinstance(ds.get("ignore_index"), int) or not 0 <= ds["ignore_index"] <= 65535:
        fail("dataset.ignore_index is not an integer in 0..65535")
    if not isinstance(ckpt.get("state_dict"), dict):
        fail("state_dict is missing")


def build_model(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the checkpoint's model (architecture only, untrained weights)."""
    from edgeseg.models import create_model

    m = ckpt["model"]
    try:
        model = create_model(
            m["name"],
            num_classes=int(m["num_classes"]),
            in_channels=int(m.get("in_channels", 3)),
            **dict(m.get("kwargs") or {}),
        )
    except EdgesegError as e:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: {e}") from None
    if m.get("pruned"):
        # Channel-pruned: same architecture, narrower layers, whose widths the saved
        # tensors give (the adapter is edgeseg.compress's).
        model = _adapt("pruned", model, ckpt)
    return model


def is_compressed_state(state_dict: dict[str, Any]) -> bool:
    """Whether a state dict holds masks (sparsification) or parametrizations (grouping)."""
    return any(k.endswith("weight_orig") or ".parametrizations." in k for k in state_dict)


def _adapt(name: str, model: nn.Module, ckpt: dict[str, Any]) -> nn.Module:
    adapter = checkpoint_adapter(name)
    if adapter is None:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: no loader for '{name}' models")
    return adapter(model, ckpt)


def load_weights(model: nn.Module, ckpt: dict[str, Any]) -> None:
    """Load ``ckpt``'s weights into ``model``, refusing a checkpoint of another model.

    Raises:
        CheckpointError: naming both models when the name, classes or tensors differ.
    """
    m = _unwrap(model)
    where = ckpt.get("path", "checkpoint")
    have = getattr(m, "edgeseg_config", None)
    want = ckpt["model"]
    if have is not None:
        if have["name"] != want["name"]:
            raise CheckpointError(f"{where} is a '{want['name']}' checkpoint, not '{have['name']}'")
        if int(have["num_classes"]) != int(want["num_classes"]):
            raise CheckpointError(
                f"{where} has {want['num_classes']} classes, the model {have['num_classes']}"
            )
    try:
        m.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{where} does not fit {type(m).__name__}: {detail}") from None


def _ema_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The EMA weights a training checkpoint (``last.pt`` of a ``train.ema`` run) holds
    besides the raw ones, keyed like the model's state dict; None without an EMA."""
    hooks = (ckpt.get("train_state") or {}).get("hooks") or {}
    ema = (hooks.get("EMAHook") or {}).get("ema")
    if not ema:
        return None
    # torch's AveragedModel: the averaged network under "module.", plus its step count.
    return {k[len("module.") :]: v for k, v in ema.items() if k.startswith("module.")}


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint and load its weights, in eval mode.

    The training checkpoint of a run with ``train.ema`` loads the average (the weights
    that run validated and saved in ``best.pt``); ``--resume`` still continues from the
    raw weights.

    Returns:
        ``(model, checkpoint)``; ``DatasetInfo.from_dict(checkpoint["dataset"])`` gives
        its classes and palette.
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt)
    averaged = _ema_state(ckpt)
    if averaged is not None:  # validated and deployed: the average, not the raw weights
        ckpt = {**ckpt, "state_dict": averaged}
    if is_compressed_state(ckpt["state_dict"]):
        # A training checkpoint (last.pt) of a run under compression: the adapter attaches
        # the same masks so the state fits, then returns the plain model a deployment runs.
        model = _adapt("masked", model, ckpt)
    else:
        load_weights(model, ckpt)
    model.eval()
    return model, ckpt
