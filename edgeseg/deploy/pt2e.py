"""PyTorch PT2E int8: ``torch.export`` -> torchao's ``prepare_pt2e`` with the X86 Inductor
quantizer (per-channel int8 weights, uint8 activations) -> min-max calibration on real
images -> ``convert_pt2e`` -> ``torch.compile`` (Inductor lowers the quantize/dequantize
patterns to oneDNN int8 kernels).

A result with no quantized layer is an error, not a silently fp32 "int8" model; the
:class:`~edgeseg.deploy.quantize.QuantReport` names the layers left in fp32.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch
from torch import nn

from edgeseg.deploy.quantize import QuantReport
from edgeseg.errors import DataError, EdgesegError

log = logging.getLogger(__name__)


def pt2e_convert(
    model: nn.Module, images: list[torch.Tensor], example: torch.Tensor
) -> tuple[torch.fx.GraphModule, QuantReport]:
    """PT2E int8 graph (not yet compiled): export, prepare, calibrate, convert.

    Raises:
        EdgesegError: torchao missing, no calibration images, or no quantized layer.
    """
    # torchao warns at import about its CUDA-only kernels, irrelevant on a CPU.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise EdgesegError("pt2e-int8 needs torchao: pip install torchao") from None
    if not images:
        raise DataError("calibration data missing: no calibration images")
    from edgeseg.deploy.rewrites import inference_graph

    # BatchNorm folded by edgeseg first: PT2E's own folding mis-shapes the bias of a
    # grouped transposed conv (SegFast's depthwise upsampling) and fails in convert.
    model = inference_graph(model.eval())
    try:
        with torch.no_grad():
            graph = torch.export.export(model, (example,)).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(graph, quantizer)
            for x in images:
                prepared(x[None].to(example.dtype))
            converted = convert_pt2e(prepared)
    except Exception as e:  # torch.export / torchao raise many kinds; one line for the user
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"PT2E quantization failed: {detail}") from None
    report = _pt2e_report(converted, len(images))
    if report.qdq_nodes == 0 or report.quantized_layers == 0:
        raise EdgesegError("PT2E quantization produced no quantized layers")
    return converted, report


def quantize_pt2e(
    model: nn.Module, images: list[torch.Tensor], example: torch.Tensor
) -> tuple[nn.Module, QuantReport]:
    """PT2E int8 with torchao's X86 Inductor quantizer, compiled with ``torch.compile``.

    Args:
        model: eval-mode fp32 model.
        images: calibration inputs, normalised ``(C, H, W)`` at ``example``'s size.
        example: an input of the shape the compiled model will run at.

    Returns:
        ``(compiled int8 model, report)``. Compilation happens here, on ``example``.

    Raises:
        EdgesegError: torchao missing, no calibration images, or no quantized layer.
    """
    import torch._inductor.config as inductor_config

    converted, report = pt2e_convert(model, images, example)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(converted)
        compiled(example)
    return compiled, report


def _pt2e_report(gm: torch.fx.GraphModule, n_calib: int) -> QuantReport:
    """Convs whose weight and input come through a dequantize node are int8."""
    compute = {
        "aten.conv2d.default": "Conv",
        "aten.conv_transpose2d.input": "ConvTranspose",
        "aten.linear.default": "Gemm",
    }
    qdq, n_int8, fp32 = 0, 0, []
    by_op: dict[str, Counter] = {}
    for node in gm.graph.nodes:
        target = str(node.target)
        if "quantize_per" in target or "dequantize_per" in target:
            qdq += 1
        op = compute.get(target)
        if op is None:
            continue
        args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        is_q = len(args) == 2 and all("dequantize" in str(a.target) for a in args)
        by_op.setdefault(op, Counter())["int8" if is_q else "fp32"] += 1
        if is_q:
            n_int8 += 1
        else:
            fp32.append(f"{op}: {node.name}")
    return QuantReport(
        "pt2e-int8", n_int8, fp32, qdq, n_calib, {k: dict(v) for k, v in by_op.items()}
    )
