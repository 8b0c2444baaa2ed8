"""Gradual grouping: alpha = 1 is the dense conv, alpha = 0 the extracted grouped conv."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeseg.compress.grouping import AlphaSchedule, GradualGrouping, block_mask, extract
from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model


def test_block_mask() -> None:
    m = block_mask(4, 4, 2, 0.25)[:, :, 0, 0]
    expected = torch.tensor(
        [[1, 1, 0.25, 0.25], [1, 1, 0.25, 0.25], [0.25, 0.25, 1, 1], [0.25, 0.25, 1, 1]]
    )
    assert torch.equal(m, expected)
    with pytest.raises(EdgesegError, match="does not divide"):
        block_mask(6, 6, 4, 0.0)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_alpha_schedule(shape: str) -> None:
    s = AlphaSchedule(100, shape)
    assert s(0) == 1.0 and s(100) == pytest.approx(0.0) and s(500) == pytest.approx(0.0)
    assert s(50) == pytest.approx(0.5)
    assert s(25) > s(75)


def _essnet_d() -> nn.Module:
    torch.manual_seed(0)
    return create_model("essnet", num_classes=5, layer="D").eval()


def test_alpha_one_is_the_dense_model() -> None:
    dense = _essnet_d()
    masked = _essnet_d()
    GradualGrouping(masked, 2, AlphaSchedule(10)).set_alpha(1.0)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(masked(x), dense(x))


@pytest.mark.parametrize(("groups", "shuffle"), [(2, False), (4, False), (2, True)])
def test_alpha_zero_equals_extracted_grouped_model(groups: int, shuffle: bool) -> None:
    model = _essnet_d()
    gg = GradualGrouping(model, groups, AlphaSchedule(10), shuffle=shuffle)
    assert gg.step(10) == 0.0
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        masked = model(x)
        extract(model)
        grouped = model(x)
    torch.testing.assert_close(grouped, masked, rtol=1e-4, atol=1e-5)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    # The extracted model has exactly the DG<g> parameter count and rebuilds by name.
    ref = create_model("essnet", num_classes=5, layer=f"DG{groups}", shuffle=shuffle)
    assert param_count(model) == param_count(ref)
    assert model.edgeseg_config["kwargs"]["layer"] == f"DG{groups}"
    ref.load_state_dict(model.state_dict())


def test_not_applicable_models() -> None:
    with pytest.raises(EdgesegError, match="needs dense Conv-module layers"):
        GradualGrouping(create_model("segfast", num_classes=3), 2, AlphaSchedule(10))
    with pytest.raises(EdgesegError, match="needs dense Conv-module layers"):
        GradualGrouping(create_model("essnet", num_classes=3, layer="DG2"), 2, AlphaSchedule(10))
    with pytest.raises(EdgesegError, match="does not divide"):
        GradualGrouping(_essnet_d(), 3, AlphaSchedule(10))
