"""Property-based: any bundle card and any recipe either load or are refused with
:class:`EdgesegError` (one line at the command line), never another exception.

Cards: every field of a valid ``model.json`` replaced by arbitrary JSON (numbers of any
size, NaN, strings, nested lists, objects). Recipes: YAML mappings of the recipe's real
section keys with arbitrary values, and arbitrary keys."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from edgeseg_runtime.bundle import write_bundle
from edgeseg_runtime.errors import EdgesegError as RuntimeError_
from edgeseg_runtime.segmenter import Segmenter as RuntimeSegmenter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeseg.config import Config, config_to_dict, load_config
from edgeseg.deploy.export import export_onnx
from edgeseg.errors import EdgesegError
from edgeseg.models import create_model
from tests.runtime.test_cards import CARD

_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("cardfuzz")
    torch.manual_seed(0)
    export_onnx(
        create_model("l3unet", num_classes=3).eval(),
        d / "m.onnx",
        input_size=(48, 64),
        metadata=CARD,
    )
    return (d / "m.onnx").read_bytes()


@given(field=st.sampled_from([*CARD, "extra"]), value=_JSON)
@_SETTINGS
def test_any_card_loads_or_is_refused(onnx_bytes: bytes, tmp_path_factory, field, value) -> None:
    folder = tmp_path_factory.mktemp("b")
    card = {**CARD, field: value}
    (folder / "model.onnx").write_bytes(onnx_bytes)
    (folder / "model.json").write_text(json.dumps(card))
    with contextlib.suppress(RuntimeError_):  # the writer checks as the reader does
        write_bundle(folder / "w", onnx_bytes, card)
    try:
        seg = RuntimeSegmenter(folder)
    except RuntimeError_ as e:
        assert str(e).strip() and "\n" not in str(e).strip()
        return
    # Accepted: it describes the graph, so its labels are class ids of the card.
    labels = seg(torch.zeros(40, 50, 3, dtype=torch.uint8).numpy())
    assert labels.shape == (40, 50) and int(labels.max()) < len(seg.classes)
    assert all(math.isfinite(s) and s > 0 for s in seg.card.std)


_SECTION_KEYS = [
    f"{section}.{key}"
    for section, fields in config_to_dict(Config()).items()
    if isinstance(fields, dict)
    for key in fields
]


@given(
    items=st.dictionaries(
        st.sampled_from(_SECTION_KEYS) | st.text(min_size=1, max_size=10) | st.integers(),
        _JSON,
        max_size=4,
    )
)
@_SETTINGS
def test_any_recipe_loads_or_is_refused(tmp_path_factory, items) -> None:
    nested: dict = {}
    for key, value in items.items():
        if not isinstance(key, str):  # YAML keys may be numbers
            nested[key] = value
            continue
        section, _, name = key.partition(".")
        if name:
            nested.setdefault(section, {})
            if isinstance(nested[section], dict):
                nested[section][name] = value
        else:
            nested[key] = value
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(yaml.safe_dump(nested, allow_unicode=True))
    try:
        cfg = load_config(path, [])
        cfg.validate()  # what train and the CLI run before any work
    except EdgesegError as e:
        assert str(e).strip() and "\n" not in str(e).strip()
        return
    assert isinstance(cfg, Config)


def test_the_strategies_reach_the_checks(tmp_path: Path) -> None:
    """A sanity anchor: a known bad value is refused by the checks the property runs."""
    bad = tmp_path / "r.yaml"
    bad.write_text(json.dumps({"optim": {"lr": -1}}))
    with pytest.raises(EdgesegError, match=r"optim\.lr"):
        load_config(bad, []).validate()
