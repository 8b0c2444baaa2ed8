"""The model zoo. Importing this package registers every family's variants."""

from edgeseg.models import (  # noqa: F401
    bisenetv2,
    cgnet,
    dabnet,
    ddrnet,
    edgesegnet,
    encoder_decoder,
    erfnet,
    essnet,
    external,
    fastscnn,
    fcn,
    l3unet,
    lraspp,
    segfast,
    squeeze_unet,
    unet,
    wspdnet,
)
from edgeseg.models._base import SegmentationModel, TappedSegmentationModel
from edgeseg.models._registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    register_resolver,
)
from edgeseg.models.encoder_decoder import EncoderDecoder, load_pretrained_encoder
from edgeseg.models.external import ContractAdapter, register_external

__all__ = [
    "ContractAdapter",
    "EncoderDecoder",
    "ModelInfo",
    "SegmentationModel",
    "TappedSegmentationModel",
    "create_model",
    "list_models",
    "load_pretrained_encoder",
    "model_info",
    "register_external",
    "register_model",
    "register_resolver",
]
