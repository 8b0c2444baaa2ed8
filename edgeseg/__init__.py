"""edgeseg: efficient semantic segmentation networks for CPUs and edge devices."""

from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.models import SegmentationModel, create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "EdgesegError",
    "SegmentationModel",
    "UnknownModelError",
    "__version__",
    "create_model",
    "list_models",
    "register_model",
]
