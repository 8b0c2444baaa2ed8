"""``edgeseg export``: a checkpoint to an fp32 or int8 ONNX file, with a parity check
against PyTorch on real images (or random inputs without data).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgeseg.defaults import INPUT_SIZE
from edgeseg.deploy.export import DEFAULT_OPSET, ExportResult, export_onnx, onnx_session, parity
from edgeseg.utils import parse_size

log = logging.getLogger(__name__)


def _check_images(
    ckpt: dict[str, Any], data: str | None, split: str, n: int, size: tuple[int, int]
) -> tuple[list[torch.Tensor], str]:
    """Up to ``n`` normalised images of the data split, else random inputs."""
    if data:
        from edgeseg.data import build_dataset
        from edgeseg.data.presets import DatasetInfo
        from edgeseg.data.transforms import eval_transform

        info = DatasetInfo.from_dict(ckpt["dataset"])
        ds = build_dataset(data, split, info, eval_transform(size))
        return [ds[i][0] for i in range(min(n, len(ds)))], "data"
    g = torch.Generator().manual_seed(0)
    in_ch = int(ckpt["model"].get("in_channels", 3))
    return [torch.randn(in_ch, *size, generator=g) for _ in range(n)], "random"


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | str | None = None,
    opset: int = DEFAULT_OPSET,
    data: str | None = None,
    split: str = "val",
    check_images: int = 4,
    int8: bool = False,
    calib_split: str = "train",
    calib_images: int = 32,
) -> ExportResult:
    """Export a checkpoint to ONNX (fp32, or int8 with ORT static quantization) and check it.

    Args:
        checkpoint: checkpoint file or run directory.
        out: the ``.onnx`` file to write.
        input_size: example and check size (default: the checkpoint's, else 360x480).
        opset: ONNX opset (>= 17).
        data: data root whose ``split`` images the parity check uses (default: random
            inputs).
        split: split of ``data``.
        check_images: images in the parity check.
        int8: quantize (QDQ, per-channel int8 weights, uint8 activations), calibrated on
            ``calib_images`` images of ``data``'s ``calib_split``; the parity check then
            measures the int8 model against fp32 PyTorch.
        calib_split: calibration split.
        calib_images: calibration images.

    Raises:
        CheckpointError, DataError, EdgesegError: one line each, naming the file.
    """
    from edgeseg.engine.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    size = parse_size(input_size or ckpt.get("input_size") or INPUT_SIZE)
    ds = ckpt["dataset"]
    meta = {
        "model": ckpt["model"],
        "classes": list(ds["classes"]),
        "palette": [list(c) for c in ds["palette"]],
        "ignore_index": ds["ignore_index"],
        "mean": list(ds["mean"]),
        "std": list(ds["std"]),
        "dataset": ds["name"],
        "input": "NCHW float32 RGB, (x / 255 - mean) / std; any H, W",
        "output": "logits (N, K, H, W)",
    }
    quant = None
    fp32_size = 0
    if int8:
        from edgeseg.deploy.quantize import calibration_images, quantize_model_onnx

        calib = calibration_images(ckpt, data, calib_split, calib_images, size)
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
            fp32 = Path(tmp) / "fp32.onnx"  # the plain fp32 file, for the size comparison
            exporter = export_onnx(model, fp32, input_size=size, opset=opset, metadata=meta)
            fp32_size = fp32.stat().st_size
        quant = quantize_model_onnx(model, out, calib, size, opset=opset, metadata=meta).to_dict()
    else:
        exporter = export_onnx(model, out, input_size=size, opset=opset, metadata=meta)
    images, source = _check_images(ckpt, data, split, check_images, size)
    session = onnx_session(out)
    max_diff, agreement = parity(model, session, images)
    return ExportResult(
        path=str(out),
        size_bytes=Path(out).stat().st_size,
        opset=opset,
        exporter=exporter,
        max_abs_diff=max_diff,
        pixel_agreement=agreement,
        check_images=len(images),
        check_source=source,
        precision="int8" if int8 else "fp32",
        fp32_size_bytes=fp32_size or Path(out).stat().st_size,
        quantization=quant,
    )
