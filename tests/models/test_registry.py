from __future__ import annotations

import pytest
from torch import nn

import edgeseg
from edgeseg.errors import EdgesegError, UnknownModelError
from edgeseg.models import _registry, create_model, list_models, register_model


def test_list_models_pattern() -> None:
    assert {"squeeze_unet", "unet"} <= set(list_models())
    assert list_models("squeeze*") == [n for n in list_models() if n.startswith("squeeze")]
    assert list_models("no-such-*") == []


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model(name="unet")
        def _dup(num_classes: int, in_channels: int = 3) -> nn.Module:  # pragma: no cover
            return nn.Identity()


def test_register_and_create_custom_model() -> None:
    @register_model(name="_test_tiny")
    def _tiny(num_classes: int, in_channels: int = 3, width: int = 4) -> nn.Module:
        """A tiny model for the registry test."""
        return nn.Conv2d(in_channels, num_classes, 1)

    try:
        m = create_model("_test_tiny", num_classes=3, width=8)
        assert m.edgeseg_config == {
            "name": "_test_tiny",
            "num_classes": 3,
            "in_channels": 3,
            "kwargs": {"width": 8},
        }
        assert _registry.model_info("_test_tiny").summary == "A tiny model for the registry test."
    finally:
        del _registry._REGISTRY["_test_tiny"]


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="did you mean squeeze_unet"):
        create_model("squeeze_unt", num_classes=3)
    with pytest.raises(EdgesegError):  # the CLI turns this into exit 2
        edgeseg.create_model("zzz", num_classes=3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "x"])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(EdgesegError, match="num_classes"):
        create_model("unet", num_classes=bad)  # type: ignore[arg-type]


def test_unknown_kwarg_is_an_error() -> None:
    with pytest.raises(EdgesegError, match="does not take 'depth'"):
        create_model("unet", num_classes=3, depth=3)
