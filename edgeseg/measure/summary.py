"""Static summaries of registered models: parameters and operation counts, no timing.

Models are built on PyTorch's ``meta`` device, so even U-Net is summarised in
milliseconds without allocating its weights or running a convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from edgeseg.defaults import INPUT_SIZE, NUM_CLASSES
from edgeseg.measure.counts import (
    conv_weight_count,
    count_flops,
    paper_macs,
    param_count,
    thesis_flops,
)
from edgeseg.models import create_model, model_info
from edgeseg.utils import parse_size

__all__ = ["summarize_model", "summarize_models"]


def summarize_model(
    name: str,
    input_size: str | tuple[int, int] = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
    **kwargs: Any,
) -> dict[str, Any]:
    """Parameters, conv weights, MACs, FLOPs and paper MACs of a registered model.

    Returns:
        ``{"name", "family", "summary", "params", "conv_weights", "macs", "flops",
        "paper_macs", "thesis_flops", "input_size", "num_classes"}`` (see
        :mod:`edgeseg.measure.profiling` for the three operation-count conventions).
    """
    h, w = parse_size(input_size, "input_size")
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **kwargs).eval()
        x = torch.empty(1, model.edgeseg_config["in_channels"], h, w)
    flops = count_flops(model, x)
    return {
        "name": name,
        "family": info.family,
        "summary": info.summary,
        "params": param_count(model),
        "conv_weights": conv_weight_count(model),
        "macs": flops // 2,
        "flops": flops,
        "paper_macs": paper_macs(model, x),
        "thesis_flops": thesis_flops(model, x),
        "input_size": [h, w],
        "num_classes": num_classes,
    }


def summarize_models(
    names: Sequence[str],
    input_size: str | tuple[int, int] = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
) -> list[dict[str, Any]]:
    """:func:`summarize_model` for each name."""
    return [summarize_model(n, input_size, num_classes) for n in names]
