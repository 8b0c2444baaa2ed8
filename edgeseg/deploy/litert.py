"""Export to LiteRT (TensorFlow Lite), the format phones, Raspberry Pis and
microcontrollers run, fp32 or int8.

The converter is Google's ``litert-torch`` (``torch.export`` -> StableHLO -> the TFLite
flatbuffer; ``pip install "edgeseg[litert]"``). The network is first rewritten for
inference (:func:`edgeseg.deploy.rewrites.inference_graph`: BatchNorm folded, folds
fused) and its transposed convolutions become convolutions + pixel shuffle
(:mod:`edgeseg.deploy.subpixel`): the TFLite converter cannot lower a transposed
convolution with output padding (ERFNet's and SegFast's upsamplers fail with "failed to
legalize mhlo.convolution" otherwise), and the rewrite is exact.

int8 is PT2E static quantization with litert-torch's own quantizer (symmetric per-channel
int8 weights, int8 activations), calibrated on the same images as ONNX int8; the file
keeps float32 input and output. A LiteRT file has a static input size: it is exported at
``input_size`` (the checkpoint's) and runs at that size, images resized to it.

The file carries edgeseg's metadata (classes, palette, normalisation, precision) as named
metadata buffers (:func:`edgeseg_runtime.litert.with_metadata`), so the torch-free runtime
reads it on its own.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError

__all__ = ["export_litert", "litert_export_unavailable"]

log = logging.getLogger(__name__)

LITERT_EXTRA = 'pip install "edgeseg[litert]"'


def litert_export_unavailable() -> str | None:
    """Why a LiteRT export cannot be made here (the converter is missing), or ``None``."""
    if importlib.util.find_spec("litert_torch") is None:
        return f"LiteRT export needs the litert-torch package ({LITERT_EXTRA})"
    return None


def _graph(model: nn.Module) -> nn.Module:
    """The network as the converter takes it: folded, transposed convs as convs."""
    from edgeseg.deploy.rewrites import inference_graph
    from edgeseg.deploy.subpixel import subpixel_deconvs

    graph = inference_graph(model)
    return subpixel_deconvs(graph, grouped=True, undersized=True, min_channels=1)[0].eval()


def _quantized(graph: nn.Module, x: torch.Tensor, calibration: list[torch.Tensor]) -> Any:
    """``(quantized graph, quant_config)``: PT2E with litert-torch's int8 quantizer."""
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    )
    exported = torch.export.export(graph, (x,)).module()
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for im in calibration:
            prepared(im[None])
    q = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    return move_exported_model_to_eval(q), QuantConfig(pt2e_quantizer=quantizer)


def export_litert(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int],
    calibration: list[torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` as a LiteRT ``.tflite`` file at ``input_size``, atomically.

    Args:
        model: an edgeseg-contract model (eval mode).
        path: the ``.tflite`` file.
        input_size: ``(H, W)`` the file runs at.
        calibration: normalised ``(C, H, W)`` images: int8 when given, else fp32.
        metadata: JSON-able values stored as ``edgeseg.<key>`` metadata.

    Returns:
        ``{"precision", "size_bytes", "converter"}``.

    Raises:
        EdgesegError: the converter is missing, or it cannot convert this network (its
            first error line: the op it could not lower).
    """
    if why := litert_export_unavailable():
        raise EdgesegError(why)
    import litert_torch
    from edgeseg_runtime.litert import with_metadata

    from edgeseg.utils import atomic_write_bytes

    in_ch = int(getattr(model, "edgeseg_config", {}).get("in_channels", 3))
    x = torch.zeros(1, in_ch, *input_size)
    graph = _graph(model)
    precision = "int8" if calibration else "fp32"
    try:
        if calibration:
            graph, config = _quantized(graph, x, calibration)
            edge = litert_torch.convert(graph, (x,), quant_config=config)
        else:
            edge = litert_torch.convert(graph, (x,))
        with tempfile.TemporaryDirectory(prefix="edgeseg-litert-") as tmp:
            edge.export(str(Path(tmp) / "m.tflite"))
            blob = (Path(tmp) / "m.tflite").read_bytes()
    except Exception as e:  # the converter raises anything: its first line says what
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
        raise EdgesegError(f"LiteRT conversion failed: {first}") from None
    meta = {"format": "edgeseg.litert", "precision": precision, **(metadata or {})}
    props = {f"edgeseg.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    blob = with_metadata(blob, props)
    atomic_write_bytes(path, blob)
    version = getattr(litert_torch, "__version__", "?")
    return {"precision": precision, "size_bytes": len(blob), "converter": f"litert-torch {version}"}
