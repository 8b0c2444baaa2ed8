"""Inference engines for an ONNX file: ONNX Runtime (always) and OpenVINO (optional).

Each runner takes the network's input array and returns its logits as float32 (or, for
a file exported with a label output, its ``(N, H, W)`` uint8 labels); the int8 variant
of a backend is the same runner on edgeseg's QDQ int8 file. Each says what precision its
engine computes in (:attr:`precision`, read from the engine itself where it chooses:
OpenVINO's CPU plugin runs bf16 wherever the CPU has bf16 units unless told otherwise,
so ``openvino`` asks for f32 and ``openvino-bf16`` for bf16, and both report what the
compiled model really uses).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg_runtime.errors import EdgesegError

__all__ = ["RUNTIME_BACKENDS", "make_runner", "onnx_props", "ort_session", "unavailable"]

log = logging.getLogger(__name__)

RUNTIME_BACKENDS = ("ort", "openvino", "openvino-bf16", "litert")
#: OpenVINO's inference precision hint of each OpenVINO backend.
OPENVINO_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}
#: OpenVINO element type names -> the precision names edgeseg prints.
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here (a missing package), or ``None`` when it can."""
    if backend not in RUNTIME_BACKENDS:
        return f"unknown backend {backend!r} (one of {', '.join(RUNTIME_BACKENDS)})"
    if backend == "litert":
        from edgeseg_runtime.litert import litert_unavailable

        return litert_unavailable()
    module = "onnxruntime" if backend == "ort" else "openvino"
    if importlib.util.find_spec(module) is None:
        extra = ' (pip install "edgeseg-runtime[openvino]")' if module == "openvino" else ""
        return f"backend {backend} needs the {module} package{extra}"
    return None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise EdgesegError(f"ONNX file not found: {path}")


def onnx_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (:func:`edgeseg_runtime.onnx_meta.read_metadata`:
    the protobuf's top level only, no session, no ``onnx`` package).

    Raises:
        EdgesegError: missing or not a readable ONNX model.
    """
    from edgeseg_runtime.onnx_meta import read_metadata

    return read_metadata(path)


def ort_session(path: str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session for ``path`` (every graph optimisation on unless
    ``optimize`` is false; ``threads`` intra-op threads, one inter-op).

    Raises:
        EdgesegError: missing or corrupt file (one line, naming it).
    """
    import onnxruntime as ort

    p = Path(path)
    _check_file(p)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    opts.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"cannot load ONNX model {p}: {first}") from None


class OrtRunner:
    """ONNX Runtime on the CPU, every graph optimisation on (fp32 math for fp32 layers:
    its CPU provider has no bf16 kernels)."""

    precision = "fp32"

    def __init__(self, path: Path, threads: int | None) -> None:
        self.session = ort_session(path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape)
        self.output_shape = list(self.session.get_outputs()[0].shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except MemoryError:
            raise
        except Exception as e:  # ORT's InvalidArgument/Fail/...: a graph that cannot take x
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise EdgesegError(
                f"ONNX Runtime cannot run this network at {tuple(x.shape)}: {first}"
            ) from None
        return _as_output(out)


class OpenVinoRunner:
    """OpenVINO on the CPU (latency hint), compiled once per input shape, its float
    layers in ``precision`` (``f32`` or ``bf16``; int8 layers of a QDQ file stay int8)."""

    def __init__(self, path: Path, threads: int | None, precision: str = "f32") -> None:
        import openvino as ov

        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as e:
            raise EdgesegError(f"{path}: OpenVINO cannot read it ({type(e).__name__})") from None
        # Asked for explicitly: left to itself the plugin picks bf16 on a bf16 CPU.
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        inp = self.model.inputs[0]
        self.input_shape = [d.get_length() if d.is_static else None for d in inp.partial_shape]
        out = self.model.outputs[0].partial_shape
        self.output_shape = [d.get_length() if d.is_static else None for d in out]
        self.shape: tuple[int, ...] | None = None
        self.compiled: Any = None
        self.asked = precision

    @property
    def precision(self) -> str:
        """The precision the compiled model's float layers run in, as OpenVINO reports
        it (``fp32``, ``bf16``); what was asked for until the first input compiles it."""
        if self.compiled is None:
            return _PRECISION_NAMES.get(self.asked, self.asked)
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        got = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        return _PRECISION_NAMES.get(got, got)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        try:
            if x.shape != self.shape:  # a static shape compiles to the fastest kernels
                self.model.reshape({self.model.inputs[0]: list(x.shape)})
                self.compiled = self.core.compile_model(self.model, "CPU", self.config)
                self.shape = x.shape
            out = self.compiled({0: x})
        except RuntimeError as e:  # e.g. a pooling window larger than this input's map
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise EdgesegError(
                f"OpenVINO cannot run this network at {tuple(x.shape)}: {first}"
            ) from None
        return _as_output(out[self.compiled.outputs[0]])


def _as_output(y: Any) -> np.ndarray:
    """Logits as float32; a label map (an integer output) as uint8, unconverted."""
    y = np.asarray(y)
    return y.astype(np.uint8, copy=False) if y.dtype.kind in "iu" else y.astype(np.float32)


def make_runner(backend: str, path: str | Path, threads: int | None = None) -> Any:
    """A callable ``(input array) -> logits`` of ``backend`` on the ONNX file ``path``.

    Raises:
        EdgesegError: an unknown or unavailable backend, an unreadable file.
    """
    why = unavailable(backend)
    if why:
        raise EdgesegError(why)
    cpus = os.cpu_count() or 1
    if threads is not None and not (isinstance(threads, int) and 0 < threads <= cpus):
        raise EdgesegError(f"threads {threads!r}: give 1 to {cpus} (this machine's CPUs)")
    p = Path(path)
    _check_file(p)
    if (backend == "litert") != (p.suffix == ".tflite"):
        raise EdgesegError(
            f"{p}: a .tflite file runs with the litert backend, an ONNX file with ort or openvino"
        )
    if backend == "litert":
        from edgeseg_runtime.litert import LiteRtRunner

        return LiteRtRunner(p, threads)
    if backend == "ort":
        return OrtRunner(p, threads)
    return OpenVinoRunner(p, threads, OPENVINO_PRECISION[backend])
