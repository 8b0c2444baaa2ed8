"""Defaults shared by the API and the command line (torch-free, so ``edgeseg --help`` and
argument errors stay fast). The API's signatures use these names; the CLI's flags take
their defaults and choices from here, so the two never drift."""

from __future__ import annotations

__all__ = [
    "ACCURACY_BUDGET",
    "BACKENDS",
    "CALIB_IMAGES",
    "COMPRESS_METHODS",
    "INPUT_SIZE",
    "LAYER_ENGINES",
    "NUM_CLASSES",
    "OPSET",
    "OUTPUTS",
    "THREADS",
]

#: Input HxW for counts, timing and export: CamVid's 360x480, the field's CPU benchmark size.
INPUT_SIZE: tuple[int, int] = (360, 480)
#: Classes of a bare model name when counting or timing it (CamVid's 11).
NUM_CLASSES = 11
#: Intra-op threads when timing: a small edge CPU's cores.
THREADS = 2
#: ONNX opset of exported models (the dynamo exporter's native one; >= 17).
OPSET = 18
#: What an exported graph outputs: the logits (the model contract's) or a uint8 label map
#: computed in the graph, arg-maxed at full size, at the network's output resolution, or
#: at 1/2 or 1/4 of the output size (:mod:`edgeseg.deploy.labels`).
OUTPUTS = ("logits", "labels", "labels-low", "labels-half", "labels-quarter")
#: Engines whose own profiler times each layer of an ONNX file (``edgeseg profile FILE``).
LAYER_ENGINES = ("ort", "openvino", "openvino-bf16")
#: The CPU inference backends, fastest-to-build first (see :mod:`edgeseg.deploy.backends`).
BACKENDS = (
    "eager",
    "channels_last",
    "compile",
    "bf16",
    "compile-bf16",
    "ort",
    "ort-int8",
    "pt2e-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "nncf-int8",
    "litert",
    "litert-int8",
)  # litert*: with the optional litert extra (a .tflite file in the LiteRT interpreter);
#  openvino*: with the optional openvino package; nncf-int8: NNCF's int8 file in OpenVINO;
#  *bf16: by default only on a CPU with bf16 units (elsewhere they emulate it, slowly)
#: mIoU (a fraction, like every metric edgeseg reports) a faster backend may lose against
#: eager PyTorch and still be picked as the best one.
ACCURACY_BUDGET = 0.01
#: Training images that calibrate int8 quantization.
CALIB_IMAGES = 32
#: What ``edgeseg compress`` does to a checkpoint (see :mod:`edgeseg.compress`).
COMPRESS_METHODS = ("prune", "sparsify", "group")
