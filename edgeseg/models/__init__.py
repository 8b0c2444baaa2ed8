"""The model zoo. Importing this package registers every family's variants."""

from edgeseg.models import erfnet, essnet, segfast, squeeze_unet, unet  # noqa: F401
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "ModelInfo",
    "SegmentationModel",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
