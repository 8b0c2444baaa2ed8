"""Checkpoint storage: int8-compacted shipped weights load back as floats."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg.data import custom_info
from edgeseg.engine.checkpoint import (
    compact_state,
    expand_state,
    load_model,
    make_checkpoint,
    save_checkpoint,
)
from edgeseg.models import create_model


def test_int8_storage_quarters_the_file_and_loads_within_half_a_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("segfast", num_classes=4).eval()
    ckpt = make_checkpoint(model, custom_info(4))
    save_checkpoint(ckpt, tmp_path / "fp32.pt")
    compact = compact_state(ckpt["state_dict"])
    assert all(v.dtype == torch.int8 for k, v in compact.items() if k.endswith("::int8"))
    save_checkpoint({**ckpt, "state_dict": compact}, tmp_path / "int8.pt")
    size = (tmp_path / "int8.pt").stat().st_size / (tmp_path / "fp32.pt").stat().st_size
    assert size < 0.35  # a quarter for the weights; norms, biases and metadata as they were
    loaded, _ = load_model(tmp_path / "int8.pt")
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype and w.shape == v.shape, k
        if v.is_floating_point() and v.dim() >= 2:  # half a step of its channel's scale
            step = v.abs().flatten(1).amax(1) / 127
            err = (w - v).abs().flatten(1).amax(1)
            assert (err <= step / 2 + 1e-7).all(), k
        else:
            assert torch.equal(w, v), k  # norms, biases, counters: as stored
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (loaded(x).argmax(1) == model(x).argmax(1)).float().mean() > 0.95
    assert expand_state(ckpt["state_dict"]) is ckpt["state_dict"]  # float dicts untouched
