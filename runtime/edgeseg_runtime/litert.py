"""LiteRT (TensorFlow Lite) files: the interpreter runner and edgeseg's metadata in them.

A ``.tflite`` file exported by edgeseg (``edgeseg export --format litert``) carries the
same ``edgeseg.*`` entries an ONNX export carries in its ``metadata_props`` (classes,
palette, normalisation, ...), stored as named metadata buffers of the flatbuffer model,
so a file runs on its own as an ONNX file does. The interpreter is ``ai-edge-litert``'s
(XNNPACK on the CPU): ``pip install "edgeseg-runtime[litert]"``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg_runtime.errors import EdgesegError

__all__ = ["LiteRtRunner", "litert_unavailable", "tflite_props", "with_metadata"]

#: How to install the interpreter.
LITERT_EXTRA = 'pip install "edgeseg-runtime[litert]"'
#: TFLite's flatbuffer file identifier.
_IDENT = b"TFL3"


def litert_unavailable() -> str | None:
    """Why a LiteRT file cannot run here, or ``None`` when it can."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return f"backend litert needs the ai-edge-litert package ({LITERT_EXTRA})"
    return None


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _read(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"LiteRT file not found: {p}")
    buf = p.read_bytes()
    if buf[4:8] != _IDENT:
        raise EdgesegError(f"{p}: not a LiteRT (.tflite) model")
    return buf


def tflite_props(path: str | Path) -> dict[str, str]:
    """The file's named metadata entries as text (edgeseg's ``edgeseg.*`` among them).

    Raises:
        EdgesegError: missing or not a LiteRT model; the interpreter not installed.
    """
    if why := litert_unavailable():
        raise EdgesegError(why)
    buf = _read(path)
    try:
        model = _schema().Model.GetRootAs(buf, 0)
        out = {}
        for i in range(model.MetadataLength()):
            md = model.Metadata(i)
            data = model.Buffers(md.Buffer()).DataAsNumpy()
            if isinstance(data, np.ndarray):
                out[md.Name().decode()] = data.tobytes().decode("utf-8", "replace")
        return out
    except Exception as e:  # a damaged flatbuffer raises anything
        raise EdgesegError(f"{path}: unreadable LiteRT model ({type(e).__name__})") from None


def with_metadata(model_bytes: bytes, props: dict[str, str]) -> bytes:
    """``model_bytes`` with ``props`` added as named metadata buffers (replacing any of
    the same name)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in props]
    for name, value in props.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        md = schema.MetadataT()
        md.name, md.buffer = name.encode(), len(model.buffers) - 1
        model.metadata.append(md)
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_IDENT)
    return bytes(builder.Output())


class LiteRtRunner:
    """The LiteRT interpreter (XNNPACK) on a ``.tflite`` file: fp32, or int8 inside."""

    precision = "fp32"

    def __init__(self, path: Path, threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        _read(path)
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads or None)
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise EdgesegError(f"{path}: LiteRT cannot load it: {first}") from None
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self.input_index, self.output_index = inp["index"], out["index"]
        self.input_shape = [int(d) for d in inp["shape"]]
        self.output_shape = [int(d) for d in out["shape"]]
        self.input_dtype = inp["dtype"]
        # An int8 file may take and give int8 tensors: (scale, zero point) of each, to
        # quantize the float input and dequantize the logits here.
        self.in_q = _qparams(inp)
        self.out_q = _qparams(out)
        # what the exporter recorded: int8 files are calibrated int8 inside, float I/O
        self.precision = tflite_props(path).get("edgeseg.precision", "fp32").strip('"')

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if list(x.shape) != self.input_shape:
            raise EdgesegError(
                f"this LiteRT file runs at {self.input_shape} only, not {list(x.shape)} "
                "(export it at the size you need: --size)"
            )
        if self.in_q is not None:
            scale, zero = self.in_q
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        self.interp.set_tensor(self.input_index, x.astype(self.input_dtype, copy=False))
        self.interp.invoke()
        y = self.interp.get_tensor(self.output_index)
        if self.out_q is not None:
            scale, zero = self.out_q
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.uint8) if y.dtype.kind in "iu" else y.astype(np.float32)


def _qparams(detail: dict[str, Any]) -> tuple[float, int] | None:
    """``(scale, zero point)`` of a quantized integer tensor, else ``None``."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return float(scale), int(zero)
    return None
