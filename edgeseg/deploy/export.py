"""Export to ONNX, with the metadata a deployment needs and a parity check against PyTorch.

The exported file is one self-contained ONNX model (weights inside, opset >= 17) with
dynamic batch, height and width: every edgeseg model pads its input to its stride and
crops the logits back *inside* the graph, so the ONNX model accepts any image size just
like the PyTorch one. The model's metadata (``metadata_props``) carries what
:class:`edgeseg.Segmenter` needs to use it without the checkpoint: the model name and
kwargs, class names, palette, void id, normalisation mean/std, and the input layout.

The exporter is PyTorch's own (``torch.onnx.export(..., dynamo=True)``, through
``torch.export`` with symbolic height and width); if a model cannot be captured that way,
the TorchScript-based exporter is tried (its trace generalises across sizes for every
zoo model; tested).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeseg_runtime.files import publish
from torch import nn

from edgeseg.defaults import INPUT_SIZE, OPSET
from edgeseg.deploy.labels import label_output
from edgeseg.deploy.onnx_passes import EXPORT_PASSES, run_passes
from edgeseg.deploy.rewrites import fuse_folding
from edgeseg.errors import EdgesegError
from edgeseg.utils import parse_size

__all__ = [
    "DEFAULT_OPSET",
    "ExportResult",
    "checkpoint_metadata",
    "export_onnx",
    "onnx_metadata",
    "onnx_session",
    "parity",
]

log = logging.getLogger(__name__)

#: Opset of exported models (the dynamo exporter's native one; >= 17 for LayerNorm etc.).
DEFAULT_OPSET = OPSET
#: Key prefix of edgeseg's entries in an ONNX model's ``metadata_props``.
META_KEY = "edgeseg"


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote and how closely it matches PyTorch."""

    path: str  # the .onnx file
    size_bytes: int  # its size on disk
    opset: int  # ONNX opset
    exporter: str  # "dynamo" or "torchscript"
    max_abs_diff: float | None  # largest |logit difference| against PyTorch on the check
    # images (None for a label-map output: it has no logits)
    pixel_agreement: float  # fraction of pixels whose argmax class agrees with PyTorch
    check_images: int  # images the parity check ran on
    check_source: str  # "data" (real images) or "random"
    precision: str = "fp32"  # "fp32" or "int8" (ORT static quantization)
    fp32_size_bytes: int = 0  # the fp32 model's size (int8 exports: for comparison)
    quantization: dict[str, Any] | None = None  # int8: QuantReport.to_dict()
    output: str = "logits"  # logits, or a label map computed in the graph (labels, labels-low)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _export(model: nn.Module, x: torch.Tensor, path: Path, opset: int, dynamic: bool) -> str:
    """Write ``model`` to ``path``; returns the exporter that succeeded."""
    kwargs: dict[str, Any] = {"input_names": ["image"], "output_names": ["logits"]}
    try:
        dyn = None
        if dynamic:
            b = torch.export.Dim("batch", max=1024)
            h = torch.export.Dim("height", max=16384)
            w = torch.export.Dim("width", max=16384)
            # Batch 1 would be specialised; dynamic batch needs an example batch of >= 2.
            dyn = {"x": {0: b, 2: h, 3: w}}
            if x.shape[0] < 2:
                x = x.expand(2, -1, -1, -1).contiguous()
        # The exporter logs a warning per torchvision op it cannot register when
        # torchvision is absent; edgeseg models use none of them.
        registry = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry.level
        registry.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    model,
                    (x,),
                    dynamo=True,
                    opset_version=opset,
                    dynamic_shapes=dyn,
                    external_data=False,
                    verbose=False,
                    **kwargs,
                )
        finally:
            registry.setLevel(level)
    except Exception as e:  # the dynamo exporter raises many kinds; fall back, say why
        log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", e)
    else:  # writing is not exporting: a full disk is the user's error, not a fallback's
        program.save(str(path), external_data=False)
        return "dynamo"
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes["logits"] = dict(axes["image"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            dynamic_axes=axes if dynamic else None,
            **kwargs,
        )
    return "torchscript"


def checkpoint_metadata(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What an exported file carries for the runtime: classes, palette, normalisation."""
    ds = ckpt["dataset"]
    return {
        "model": ckpt["model"],
        "classes": list(ds["classes"]),
        "palette": [list(c) for c in ds["palette"]],
        "ignore_index": ds["ignore_index"],
        "mean": list(ds["mean"]),
        "std": list(ds["std"]),
        "dataset": ds["name"],
        "layout": "NCHW",
        "input": "NCHW float32 RGB, (x / 255 - mean) / std; any H, W",
        "output": "logits (N, K, H, W)",
    }


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | str = INPUT_SIZE,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    metadata: dict[str, Any] | None = None,
    output: str = "logits",
) -> str:
    """Export ``model`` (eval mode, fp32) to one self-contained ONNX file, atomically.

    Args:
        model: an edgeseg-contract model (NCHW float in, logits out).
        path: output ``.onnx`` file; written to a temporary file first, then renamed.
        input_size: HxW of the example input (any size works when ``dynamic``).
        opset: ONNX opset (>= 17).
        dynamic: symbolic batch, height and width.
        metadata: JSON-able values stored under ``metadata_props`` (``edgeseg.<key>``).
        output: ``logits``, or a uint8 label map (``labels``, ``labels-low``:
            :mod:`edgeseg.deploy.labels`), recorded as the ``output`` metadata.

    Returns:
        The exporter used: ``"dynamo"`` or ``"torchscript"``.

    Raises:
        EdgesegError: opset below 17, or the export failed (the message says why).
    """
    import onnx

    newest = onnx.defs.onnx_opset_version()  # what this onnx (and its checker) knows
    if not 17 <= opset <= newest:
        raise EdgesegError(f"--opset {opset}: choose 17 to {newest}")
    h, w = parse_size(input_size)
    in_ch = int(getattr(model, "edgeseg_config", {}).get("in_channels", 3))
    was_training = model.training
    model.eval()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # Exact rewrites: L3U-Net's fold permute becomes a strided conv, which ONNX
        # Runtime runs 2-3x faster than a 6-D Transpose; depthwise transposed convs
        # become phase convs.
        graph = _phase_deconvs(fuse_folding(model))
        with torch.no_grad():
            exporter = _export(graph, torch.randn(1, in_ch, h, w), tmp, opset, dynamic)
        proto = onnx.load(str(tmp))
        run_passes(proto, EXPORT_PASSES)
        meta = {"format": "edgeseg.onnx", **(metadata or {})}
        if output != "logits":
            meta["output"] = f"{label_output(proto, output)} (N, H, W) uint8 class ids"
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key = f"{META_KEY}.{key}"
            entry.value = value if isinstance(value, str) else json.dumps(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        publish(tmp, out)
    except EdgesegError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"ONNX export to {out} failed: {first}") from None
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return exporter


def _phase_deconvs(model: nn.Module) -> nn.Module:
    """``model`` with its depthwise transposed convs as phase convs + pixel shuffle
    (:func:`edgeseg.deploy.subpixel.subpixel_deconvs`, BatchNorm folded first so it still
    fuses into a conv), or ``model`` itself when it has none. The engines run a depthwise
    transposed conv at 0-1 % of the CPU's peak: SegFast's three took 34 % of its time on
    OpenVINO f32 and 66 % in bf16, and the rewrite made it 1.30x and 2.11x faster
    (``benchmarks/deconv.py``, AMD EPYC Zen 5), labels equal to 99.95 % or more."""
    if not any(
        type(m) is nn.ConvTranspose2d and m.groups == m.in_channels == m.out_channels
        for m in model.modules()
    ):
        return model
    from edgeseg.deploy.rewrites import inference_graph
    from edgeseg.deploy.subpixel import subpixel_deconvs

    rewritten, _ = subpixel_deconvs(inference_graph(model), only_depthwise=True, min_channels=1)
    return rewritten


def onnx_metadata(
    path: str | os.PathLike[str], props: dict[str, str] | None = None
) -> dict[str, Any]:
    """edgeseg's metadata of an exported model (values JSON-decoded where they are JSON);
    ``props``: the file's ``metadata_props`` if already read.

    Raises:
        EdgesegError: the file is missing, not ONNX, or not exported by edgeseg.
    """
    from edgeseg_runtime.backends import onnx_props  # the one reader of both packages

    p = Path(path)
    meta: dict[str, Any] = {}
    for key, value in (onnx_props(p) if props is None else props).items():
        if key.startswith(META_KEY + "."):
            try:
                meta[key[len(META_KEY) + 1 :]] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                meta[key[len(META_KEY) + 1 :]] = value
    if meta.get("format") != "edgeseg.onnx":
        raise EdgesegError(f"{p} is an ONNX model but not one exported by edgeseg (no metadata)")
    missing = [k for k in ("model", "classes", "palette", "mean", "std") if k not in meta]
    bad = [
        k
        for k in ("classes", "palette", "mean", "std")
        if k in meta and not isinstance(meta[k], list)
    ]
    if missing or bad or not isinstance(meta.get("model"), dict):
        what = ", ".join(missing or bad) or "model"
        raise EdgesegError(f"{p}: edgeseg metadata is incomplete or malformed ({what})")
    return meta


def onnx_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``, all graph optimisations on (the one the
    torch-free runtime uses, :func:`edgeseg_runtime.backends.ort_session`).

    Raises:
        EdgesegError: missing or corrupt file (one line, naming it).
    """
    from edgeseg_runtime.backends import ort_session

    return ort_session(path, threads)


def parity(
    model: nn.Module, session: Any, images: list[torch.Tensor] | torch.Tensor
) -> tuple[float, float]:
    """Max |logit difference| and argmax pixel agreement between PyTorch and ONNX Runtime
    (for a file that outputs labels, :mod:`edgeseg.deploy.labels`: ``None`` and the
    agreement of its labels with PyTorch's arg-max).

    Args:
        model: the PyTorch model (eval mode).
        session: an ONNX Runtime session of its export, or any callable ``input array
            -> output array`` (a runtime runner: OpenVINO, LiteRT).
        images: normalised ``(C, H, W)`` tensors (or one ``(B, C, H, W)`` batch).
    """
    batch = list(images) if isinstance(images, list) else list(images.unbind(0))
    if callable(session):
        run = session
    else:
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {name: x})[0]

    max_diff: float | None = 0.0
    agree, total = 0, 0
    with torch.inference_mode():
        for x in batch:
            ref = model(x[None]).float().numpy()
            got = run(x[None].numpy().astype(np.float32))
            if got.ndim == 3:  # a label map
                max_diff, labels = None, got
            else:
                max_diff = max(max_diff or 0.0, float(np.abs(ref - got).max()))
                labels = got.argmax(1)
            agree += int((ref.argmax(1) == labels).sum())
            total += ref.shape[0] * ref.shape[2] * ref.shape[3]
    return max_diff, agree / max(total, 1)
