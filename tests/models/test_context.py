"""CGNet and DABNet: counts against the authors' code, block shapes."""

from __future__ import annotations

import pytest
import torch

from edgeseg.layers.context import ContextGuided, DABModule, DownsampleBlock
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model


@pytest.mark.parametrize(("name", "count"), [("cgnet", 496_306), ("dabnet", 756_643)])
def test_counts_equal_the_reference_code(name: str, count: int) -> None:
    # The authors' code (CGNet M=3 N=21; DABNet), instantiated at 19 classes.
    with torch.device("meta"):
        assert param_count(create_model(name, num_classes=19)) == count


def test_blocks_keep_or_halve_the_resolution() -> None:
    x = torch.randn(2, 64, 16, 24)
    assert ContextGuided(64, 64, 2, 8)(x).shape == x.shape
    assert ContextGuided(64, 128, 4, 16, down=True)(x).shape == (2, 128, 8, 12)
    assert DABModule(64, d=4)(x).shape == x.shape
    assert DownsampleBlock(64, 96)(x).shape == (2, 96, 8, 12)  # conv 32 + pooled 64
