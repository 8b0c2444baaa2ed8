"""The model zoo. Importing this package registers every family's variants."""

from edgeseg.models import (  # noqa: F401
    edgesegnet,
    erfnet,
    essnet,
    fcn,
    l3unet,
    segfast,
    squeeze_unet,
    unet,
    wspdnet,
)
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
