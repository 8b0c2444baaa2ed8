"""Building blocks shared by two or more model families."""

from edgeseg.layers.conv import NORMS, ConvNormAct, ConvTransposeNormAct, make_norm
from edgeseg.layers.fire import Fire, TransposedFire
from edgeseg.layers.separable import DWConv, DWConvTranspose
from edgeseg.layers.spark import Spark
from edgeseg.layers.up import UpBlock

__all__ = [
    "NORMS",
    "ConvNormAct",
    "ConvTransposeNormAct",
    "DWConv",
    "DWConvTranspose",
    "Fire",
    "Spark",
    "TransposedFire",
    "UpBlock",
    "make_norm",
]
