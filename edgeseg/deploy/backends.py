"""CPU inference backends: each a callable ``normalised NCHW float tensor -> logits tensor``.

=================  ==========================================================================
``eager``          the PyTorch model as trained: eval mode, NCHW, fp32 (the reference point)
``channels_last``  eager with BatchNorm folded into the convs and NHWC tensors
``compile``        ``torch.compile`` (Inductor, weights frozen), channels_last
``bf16``           ``channels_last`` under bfloat16 autocast (convs and matmuls in bf16)
``compile-bf16``   ``compile`` traced under bfloat16 autocast
``ort``            the fp32 ONNX export in ONNX Runtime (all graph optimisations)
``ort-int8``       ONNX Runtime static int8 (QDQ, per-channel), calibrated on training images
``pt2e-int8``      PyTorch PT2E int8 (torchao X86 Inductor quantizer) compiled with Inductor
``openvino``       the fp32 ONNX export in OpenVINO, its inference precision forced to f32
``openvino-bf16``  the same file in OpenVINO with bf16 inference precision
``openvino-int8``  edgeseg's QDQ int8 file in OpenVINO
``nncf-int8``      NNCF's int8 file (from the fp32 export) in OpenVINO
``litert``         the network as a LiteRT ``.tflite`` file (:mod:`edgeseg.deploy.litert`),
                   run by the LiteRT interpreter (XNNPACK)
``litert-int8``    the same, PT2E int8 (litert-torch's quantizer), calibrated like ONNX int8
=================  ==========================================================================

Every runner carries ``precision``: what its float layers compute in, read from the engine
where the engine decides (OpenVINO), from the backend otherwise.

:func:`edgeseg.measure.bench.bench` times them side by side; :class:`edgeseg.Segmenter`
runs one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.defaults import BACKENDS, INPUT_SIZE
from edgeseg.errors import EdgesegError

log = logging.getLogger(__name__)


#: Backends that need a PyTorch model (not available for a bare ONNX file).
TORCH_BACKENDS = ("eager", "channels_last", "compile", "bf16", "compile-bf16", "pt2e-int8")
#: Backends whose float layers run in bfloat16.
BF16_BACKENDS = ("bf16", "compile-bf16", "openvino-bf16")
#: CPU flags of native bf16 arithmetic (x86 AVX-512 BF16 or AMX, Arm BF16).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes bf16 in hardware (elsewhere bf16 is emulated, slowly, so
    the bf16 backends are left out of the defaults)."""
    from edgeseg.cpu import cpu_flags

    return bool(BF16_FLAGS & (cpu_flags() if flags is None else flags))


Runner = Callable[[torch.Tensor], torch.Tensor]


def check_backends(names: Sequence[str]) -> list[str]:
    """Validate backend names. Raises EdgesegError naming the unknown one."""
    out = []
    for n in names:
        n = n.strip()
        if n not in BACKENDS:
            raise EdgesegError(f"unknown backend {n!r}; choose from {', '.join(BACKENDS)}")
        out.append(n)
    if not out:
        raise EdgesegError("--backends: no backend given")
    return out


#: The ONNX backends: engine of edgeseg_runtime, and whether it runs an int8 file
#: (``nncf-int8``: NNCF's, the others edgeseg's own QDQ file).
ONNX_ENGINES = {
    "ort": ("ort", False),
    "ort-int8": ("ort", True),
    "openvino": ("openvino", False),
    "openvino-bf16": ("openvino-bf16", False),
    "openvino-int8": ("openvino", True),
    "nncf-int8": ("openvino", True),
}


#: The LiteRT backends: their ``.tflite`` file in a bench's work folder.
LITERT_FILES = {"litert": "model.tflite", "litert-int8": "int8.tflite"}


def onnx_backend_unavailable(backend: str) -> str | None:
    """Why a file backend (ONNX, LiteRT) cannot run here (its engine's or converter's
    package is missing), or None."""
    from edgeseg_runtime.backends import unavailable

    if backend in LITERT_FILES:
        from edgeseg.deploy.litert import litert_export_unavailable

        return unavailable("litert") or litert_export_unavailable()
    if backend not in ONNX_ENGINES:
        return None
    if backend == "nncf-int8":
        from edgeseg.deploy.quantize import nncf_unavailable

        if why := nncf_unavailable():
            return f"backend nncf-int8: {why}"
    return unavailable(ONNX_ENGINES[backend][0])


def _engine_runner(backend: str, path: Path, threads: int | None, example: Any) -> Runner:
    """An ONNX engine of edgeseg_runtime behind the torch-tensor runner interface; built
    on ``example`` once, so a per-shape compile (OpenVINO) counts as build time."""
    from edgeseg_runtime.backends import make_runner as make_engine

    engine = make_engine(
        ONNX_ENGINES[backend][0] if backend in ONNX_ENGINES else "litert", path, threads
    )

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(engine(x.contiguous().numpy()))

    if example is not None:
        run(example)
    run.engine = engine  # type: ignore[attr-defined]  # its precision, read by bench
    return run


def runner_precision(backend: str, run: Runner) -> str:
    """What ``run``'s convolutions compute in: ``int8`` for the int8 backends (their
    other layers in the engine's float precision, e.g. ``int8+fp32``), else the engine's
    own report (OpenVINO) or the backend's (``bf16``, ``fp32``)."""
    engine = getattr(getattr(run, "engine", None), "precision", None)
    if backend.endswith("int8"):
        return f"int8+{engine}" if engine and engine != "int8" else "int8"
    return engine or backend_precision(backend)


def backend_precision(backend: str) -> str:
    """The precision a backend's convolutions compute in, by its name alone."""
    if backend.endswith("int8"):
        return "int8"
    return "bf16" if backend in BF16_BACKENDS else "fp32"


def _autocast(run: Runner) -> Runner:
    """``run`` under bfloat16 autocast, its logits back in float32."""

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run(x).float()

    return bf16


def make_runner(
    backend: str,
    *,
    model: nn.Module | None = None,
    onnx_path: str | os.PathLike[str] | None = None,
    int8_path: str | os.PathLike[str] | None = None,
    example: torch.Tensor | None = None,
    calibration: list[torch.Tensor] | None = None,
    threads: int | None = None,
    litert_path: str | os.PathLike[str] | None = None,
) -> Runner:
    """A callable for one backend.

    Args:
        backend: one of :data:`BACKENDS`.
        model: the eval-mode PyTorch model (torch backends, and to export for ``ort``).
        onnx_path: fp32 ONNX file (``ort``; exported from ``model`` if missing).
        int8_path: int8 ONNX file (the ``*int8`` ONNX backends; quantized from
            ``onnx_path`` if missing, by NNCF for ``nncf-int8``).
        example: an input of the size the compiled backends will run at.
        calibration: normalised ``(C, H, W)`` images for the int8 backends.
        threads: intra-op threads (ONNX Runtime; torch uses the process setting).
        litert_path: the ``.tflite`` file of a ``litert*`` backend (converted from
            ``model`` if missing).

    Raises:
        EdgesegError: unknown backend, or what it needs is missing.
    """
    check_backends([backend])
    why = onnx_backend_unavailable(backend)
    if why:
        raise EdgesegError(why)
    if backend in TORCH_BACKENDS:
        if model is None:
            raise EdgesegError(
                f"backend {backend!r} needs a checkpoint or model name, not an ONNX file"
            )
        return _torch_runner(backend, model, example, calibration)
    # Files made here (an export, an int8 copy) live only until the session has loaded
    # them: nothing is left in the temporary folder, nothing is written next to a user's file.
    with tempfile.TemporaryDirectory(prefix="edgeseg-") as tmp:
        if backend in LITERT_FILES:
            path = _litert_file(backend, model, litert_path, Path(tmp), example, calibration)
            return _engine_runner(backend, path, threads, example)
        if onnx_path is None or not Path(onnx_path).is_file():
            if model is None:
                raise EdgesegError(f"backend {backend!r} needs an ONNX file or a model to export")
            from edgeseg.deploy.export import export_onnx

            onnx_path = Path(tmp) / "model.onnx"
            size = tuple(example.shape[-2:]) if example is not None else INPUT_SIZE
            export_onnx(model, onnx_path, input_size=size)
        if not ONNX_ENGINES[backend][1]:
            return _engine_runner(backend, Path(onnx_path), threads, example)
        if int8_path is None or not Path(int8_path).is_file():
            int8_path = Path(tmp) / "model.int8.onnx"
            if backend == "nncf-int8":
                from edgeseg.deploy.quantize import quantize_onnx_nncf

                quantize_onnx_nncf(Path(onnx_path), int8_path, calibration or [])
            else:
                _quantize(model, Path(onnx_path), int8_path, calibration, example)
        return _engine_runner(backend, Path(int8_path), threads, example)


def _torch_runner(
    backend: str,
    model: nn.Module,
    example: torch.Tensor | None,
    calibration: list[torch.Tensor] | None,
) -> Runner:
    """A PyTorch backend's callable (see the module's table)."""
    from edgeseg.deploy.rewrites import inference_graph
    from edgeseg.deploy.tuning import compile_for_inference

    if backend == "eager":
        m = model.eval()
        return lambda x: m(x)
    nhwc = torch.channels_last
    if backend in ("channels_last", "bf16"):
        m = inference_graph(model).to(memory_format=nhwc)
        run = lambda x: m(x.contiguous(memory_format=nhwc))  # noqa: E731
        return run if backend == "channels_last" else _autocast(run)
    if example is None:
        raise EdgesegError(f"backend {backend!r} needs an example input size")
    if backend == "pt2e-int8":
        from edgeseg.deploy.pt2e import quantize_pt2e

        m, _ = quantize_pt2e(model, calibration or [], example)
        return lambda x: m(x)
    cl = inference_graph(model).to(memory_format=nhwc)
    ex = example.contiguous(memory_format=nhwc)
    if backend == "compile":
        m = compile_for_inference(cl, ex)
        return lambda x: m(x.contiguous(memory_format=nhwc))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # compile-bf16: traced with bf16 casts
        m = compile_for_inference(cl, ex)
    return _autocast(lambda x: m(x.contiguous(memory_format=nhwc)))


def _litert_file(
    backend: str,
    model: nn.Module | None,
    given: str | os.PathLike[str] | None,
    tmp: Path,
    example: torch.Tensor | None,
    calibration: list[torch.Tensor] | None,
) -> Path:
    """The ``.tflite`` file of a LiteRT backend: the one given, or converted into ``tmp``."""
    if given is not None and Path(given).is_file():
        return Path(given)
    if model is None:
        raise EdgesegError(f"backend {backend!r} needs a .tflite file or a model to convert")
    from edgeseg.deploy.litert import export_litert

    path = tmp / LITERT_FILES[backend]
    size = tuple(example.shape[-2:]) if example is not None else INPUT_SIZE
    calib = (calibration or []) if backend == "litert-int8" else None
    if calib is not None and not calib:
        raise EdgesegError("backend 'litert-int8' needs calibration images")
    export_litert(model, path, input_size=size, calibration=calib)  # type: ignore[arg-type]
    return path


def _quantize(
    model: nn.Module | None,
    fp32: Path,
    out: Path,
    calibration: list[torch.Tensor] | None,
    example: torch.Tensor | None,
) -> None:
    """The int8 file of ``ort-int8``: from the network when there is one (transposed convs
    rewritten so they run in int8 too), else from the fp32 file as it is."""
    from edgeseg.deploy.quantize import quantize_model_onnx, quantize_onnx

    if model is not None:
        size = tuple(example.shape[-2:]) if example is not None else INPUT_SIZE
        quantize_model_onnx(model, out, calibration or [], size)  # type: ignore[arg-type]
    else:
        quantize_onnx(fp32, out, calibration or [])
