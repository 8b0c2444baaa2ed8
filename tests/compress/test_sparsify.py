"""Sparsification during training: schedule values, masks through optimizer steps, strip."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from edgeseg.compress.sparsify import PolynomialSchedule, Sparsifier, sparsity_report, strip
from edgeseg.errors import EdgesegError


def test_schedule_start_middle_end() -> None:
    s = PolynomialSchedule(final=0.6, initial=0.0, begin_step=30_000, end_step=60_000, every=100)
    assert s(0) == 0.0 and s(30_000) == 0.0  # before and at t0: s_i
    # Middle: s_f + (s_i - s_f) * 0.5^3 = 0.6 - 0.6 / 8
    assert s(45_000) == pytest.approx(0.6 - 0.6 / 8)
    assert s(60_000) == pytest.approx(0.6) and s(90_000) == pytest.approx(0.6)
    assert s.due(30_000) and s.due(30_100) and not s.due(30_050) and not s.due(10_000)


@pytest.mark.parametrize(
    "kwargs",
    [{"final": 1.0}, {"final": -0.1}, {"initial": 1.2}, {"begin_step": 5, "end_step": 5}],
)
def test_schedule_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(EdgesegError):
        PolynomialSchedule(**kwargs)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 1))


def test_masked_weights_stay_zero_through_optimizer_steps() -> None:
    net = _net()
    sp = Sparsifier(net, PolynomialSchedule(final=0.5, begin_step=0, end_step=10, every=1))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    sp.apply(0.5)
    zero_before = [(m.weight == 0) for m in (net[0], net[2])]
    assert all(abs(z.float().mean().item() - 0.5) < 0.02 for z in zero_before)
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(2, 3, 8, 8)).square().mean().backward()
        opt.step()
    net(torch.randn(1, 3, 8, 8))  # the effective weight is recomputed in the forward pass
    for z, m in zip(zero_before, (net[0], net[2]), strict=True):
        assert bool((m.weight[z] == 0).all())  # the effective weight is still zero there
    assert sparsity_report(net)["total"] == pytest.approx(0.5, abs=0.02)


def test_schedule_drives_masks_and_strip_keeps_zeros() -> None:
    net = _net()
    sp = Sparsifier(net, PolynomialSchedule(final=0.6, begin_step=0, end_step=100, every=10))
    seen = [sp.step(t) for t in range(0, 121)]
    updates = [s for s in seen if s is not None]
    assert updates[0] == 0.0 and updates[-1] == pytest.approx(0.6)
    assert updates == sorted(updates)
    strip(net)
    assert not hasattr(net[0], "weight_orig")
    assert isinstance(net[0].weight, nn.Parameter)
    report = sparsity_report(net)
    assert report["total"] == pytest.approx(0.6, abs=0.02)
    # The plain state dict has no masks and loads into a fresh network.
    fresh = _net()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))


def test_layer_patterns() -> None:
    net = _net()
    sp = Sparsifier(net, PolynomialSchedule(), layers=["2"])
    assert [n for n, _ in sp.layers] == ["2"]
    with pytest.raises(EdgesegError, match="no conv"):
        Sparsifier(net, PolynomialSchedule(), layers=["nothing*"])
