"""Models from outside the zoo: the contract adapter, register_external, torchvision:NAME."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from edgeseg.data import custom_info
from edgeseg.engine.checkpoint import load_model, make_checkpoint, save_checkpoint
from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.models import ContractAdapter, create_model, register_external
from edgeseg.models._registry import _REGISTRY


class DictNet(nn.Module):
    """torchvision-style: a dict with "out" and "aux", at a quarter of the input size."""

    def __init__(self, num_classes: int = 3, **kw: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, stride=4, padding=1)
        self.kw = kw

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.conv(x)
        return {"out": y, "aux": y * 0}


def test_adapter_returns_logits_at_input_size() -> None:
    m = ContractAdapter(DictNet(5))
    y = m(torch.randn(2, 3, 37, 53))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5, 37, 53)
    seq = ContractAdapter(nn.Sequential(nn.Conv2d(3, 2, 1)))
    assert seq(torch.randn(1, 3, 8, 8)).shape == (1, 2, 8, 8)


@pytest.fixture
def registered() -> Iterator[str]:
    register_external("dictnet_test", DictNet)
    yield "dictnet_test"
    _REGISTRY.pop("dictnet_test", None)


def test_register_external_builds_and_round_trips_a_checkpoint(registered: str, tmp_path) -> None:
    m = create_model(registered, num_classes=4)
    assert m.edgeseg_config["name"] == registered
    assert m(torch.randn(1, 3, 21, 30)).shape == (1, 4, 21, 30)
    with pytest.raises(ValueError, match="already registered"):
        register_external(registered, DictNet)
    path = tmp_path / "m.pt"
    save_checkpoint(make_checkpoint(m, custom_info(4)), path)
    m2, _ = load_model(path)
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(m.eval()(x), m2(x))


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A stand-in for torchvision.models.segmentation (the real one may not be installed)."""
    calls: dict[str, object] = {}

    def lraspp_mobilenet_v3_large(**kw: object) -> nn.Module:
        """LR-ASPP (stand-in)."""
        calls.update(kw)
        return DictNet(int(kw.pop("num_classes")))  # type: ignore[call-overload]

    seg = types.ModuleType("torchvision.models.segmentation")
    seg.lraspp_mobilenet_v3_large = lraspp_mobilenet_v3_large  # type: ignore[attr-defined]
    seg.__all__ = ["lraspp_mobilenet_v3_large"]  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    for name, mod in (
        ("torchvision", tv),
        ("torchvision.models", models),
        ("torchvision.models.segmentation", seg),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_torchvision_name_builds_from_scratch(fake_torchvision: dict[str, object]) -> None:
    m = create_model("torchvision:lraspp_mobilenet_v3_large", num_classes=6)
    # Nothing pretrained, nothing downloaded.
    assert fake_torchvision["weights"] is None and fake_torchvision["weights_backbone"] is None
    assert m(torch.randn(1, 3, 33, 47)).shape == (1, 6, 33, 47)
    with pytest.raises(UnknownModelError, match="lraspp_mobilenet_v3_large"):
        create_model("torchvision:deeplab_v99", num_classes=6)


def test_torchvision_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    monkeypatch.setitem(sys.modules, "torchvision.models.segmentation", None)
    with pytest.raises(EdgesegError, match="needs torchvision"):
        create_model("torchvision:lraspp_mobilenet_v3_large", num_classes=6)


def test_real_torchvision_lraspp_when_installed() -> None:
    try:
        import torchvision  # noqa: F401
    except Exception:
        pytest.skip("torchvision is not installed (or does not match this torch)")
    m = create_model("torchvision:lraspp_mobilenet_v3_large", num_classes=11).eval()
    assert m(torch.randn(1, 3, 97, 131)).shape == (1, 11, 97, 131)
