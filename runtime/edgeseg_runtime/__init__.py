"""edgeseg-runtime: run edgeseg's exported segmentation networks without PyTorch.

numpy, Pillow and ONNX Runtime (OpenVINO optional) are all it imports.
"""

from __future__ import annotations

from edgeseg_runtime.card import ModelCard
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.segmenter import Segmenter

__version__ = "0.1.0"

__all__ = ["EdgesegError", "ModelCard", "Segmenter", "__version__"]
