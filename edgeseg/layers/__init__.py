"""Building blocks shared by two or more model families."""

from edgeseg.layers.conv import NORMS, ConvNormAct, ConvTransposeNormAct, make_norm
from edgeseg.layers.conv_module import UPS, ChannelShuffle, ConvModule, parse_layer
from edgeseg.layers.erfnet_blocks import Downsampler, NonBottleneck1D, Upsampler
from edgeseg.layers.fire import Fire, TransposedFire
from edgeseg.layers.pyramid import PyramidPooling
from edgeseg.layers.separable import DWConv, DWConvTranspose
from edgeseg.layers.spark import Spark
from edgeseg.layers.up import UpBlock

__all__ = [
    "NORMS",
    "UPS",
    "ChannelShuffle",
    "ConvModule",
    "ConvNormAct",
    "ConvTransposeNormAct",
    "DWConv",
    "DWConvTranspose",
    "Downsampler",
    "Fire",
    "NonBottleneck1D",
    "PyramidPooling",
    "Spark",
    "TransposedFire",
    "UpBlock",
    "Upsampler",
    "make_norm",
    "parse_layer",
]
