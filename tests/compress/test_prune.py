"""Structured pruning: dead channels removed leave outputs unchanged; pruned checkpoints load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeseg.compress.prune import Cut, _ConvModuleCut, plan_pruning, prune_channels
from edgeseg.data import custom_info
from edgeseg.engine.checkpoint import load_model, make_checkpoint, save_checkpoint
from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model

CASES = [
    ("squeeze_unet", {}),
    ("segfast", {}),
    ("erfnet", {}),
    ("essnet", {"layer": "DG2", "shuffle": True}),  # DGCS: grouped pointwise + shuffle
    ("essnet", {"layer": "DG4", "shuffle": True}),
    ("essnet_a", {}),  # DG2 without shuffle
]


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so a wrong channel mapping shows in the outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize(("name", "kw"), CASES, ids=[f"{n}{kw}" for n, kw in CASES])
def test_removing_dead_channels_keeps_outputs(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **kw).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 48, 64)
    before = param_count(model)
    kinds: list[str] = []

    def kill(cuts: list[Cut]) -> None:
        for cut in cuts:
            cut.kill()
            kinds.append(type(cut).__name__)

    with torch.no_grad():
        cuts = plan_pruning(model, 0.5, x)
        kill(cuts)
        y0 = model(x)
        for cut in cuts:
            cut.apply()
        y1 = model(torch.cat([x]))
    assert y1.shape == y0.shape == (1, 5, 48, 64)
    torch.testing.assert_close(y1, y0, atol=1e-4, rtol=1e-4)
    # Channels really went (the residual channels of grouped Conv-modules stay).
    grouped = kw.get("layer", "D").startswith("DG") or name == "essnet_a"
    assert param_count(model) < (0.7 if grouped else 0.6) * before
    if grouped:
        assert "_ConvModuleCut" in kinds  # grouped modules are cut by edgeseg itself
    # A pruned model still follows the contract at another size.
    assert model(torch.randn(2, 3, 37, 53)).shape == (2, 5, 37, 53)


def test_shuffle_is_not_treated_as_identity() -> None:
    """The inner cut of a DGCS module maps pw1's channels through the permutation."""
    model = create_model("essnet", num_classes=3, layer="DG2", shuffle=True)
    cuts = [
        c
        for c in plan_pruning(model, 0.5, torch.randn(1, 3, 32, 32))
        if isinstance(c, _ConvModuleCut)
    ]
    assert cuts
    cut = cuts[0]
    assert cut._mid != cut._pw1_out  # identity would keep the same positions


def test_pruned_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("erfnet", num_classes=4).eval()
    x = torch.randn(1, 3, 32, 48)
    info = prune_channels(model, 0.5, x, round_to=8)
    assert info["params_after"] < info["params_before"]
    path = tmp_path / "pruned.pt"
    save_checkpoint(make_checkpoint(model, custom_info(4)), path)
    loaded, ckpt = load_model(path)
    assert ckpt["model"]["pruned"] is True
    assert param_count(loaded) == info["params_after"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_bad_ratio_is_an_error() -> None:
    model = create_model("segfast", num_classes=3)
    for r in (-0.1, 1.0, 1.5):
        with pytest.raises(EdgesegError, match="must be in \\[0, 1\\)"):
            plan_pruning(model, r, torch.randn(1, 3, 32, 32))
