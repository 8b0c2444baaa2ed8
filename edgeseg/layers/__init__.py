"""Building blocks shared by two or more model families."""

from edgeseg.layers.bottleneck import Bottleneck
from edgeseg.layers.conv import NORMS, ConvNormAct, ConvTransposeNormAct, make_norm
from edgeseg.layers.conv_module import UPS, ChannelShuffle, ConvModule, parse_layer
from edgeseg.layers.erfnet_blocks import Downsampler, DWSDil, NonBottleneck1D, Upsampler
from edgeseg.layers.fire import Fire, FireDeconv, TransposedFire
from edgeseg.layers.pyramid import PyramidPooling
from edgeseg.layers.separable import DWConv, DWConvTranspose, SeparableConvNormAct
from edgeseg.layers.spark import Spark
from edgeseg.layers.up import UpBlock

__all__ = [
    "NORMS",
    "UPS",
    "Bottleneck",
    "ChannelShuffle",
    "ConvModule",
    "ConvNormAct",
    "ConvTransposeNormAct",
    "DWConv",
    "DWConvTranspose",
    "DWSDil",
    "Downsampler",
    "Fire",
    "FireDeconv",
    "NonBottleneck1D",
    "PyramidPooling",
    "SeparableConvNormAct",
    "Spark",
    "TransposedFire",
    "UpBlock",
    "Upsampler",
    "make_norm",
    "parse_layer",
]
