"""BiSeNet V2: counts against the reference code; boosters stay out of the inference graph."""

from __future__ import annotations

import torch

from edgeseg.measure.counts import param_count
from edgeseg.models import create_model


def test_counts_equal_the_reference_code() -> None:
    # CoinCheung/BiSeNet's BiSeNetV2(19, aux_mode="train"): 5,231,487 = 3,358,627 + boosters
    with torch.device("meta"):
        model = create_model("bisenetv2", num_classes=19)
        boosters = model.aux_heads()
    assert param_count(model) == 3_358_627
    assert param_count(boosters) == 1_872_860


def test_boosters_read_the_semantic_branch_and_forward_is_plain() -> None:
    model = create_model("bisenetv2", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        logits, taps = model.forward_taps(x)
        aux = {k: h(taps[k]) for k, h in model.aux_heads().eval().items()}
        plain = model(x)
    assert logits.shape == plain.shape == (1, 5, 64, 96)
    assert {k: v.shape[-2:] for k, v in taps.items()} == {
        "s2": (16, 24),
        "s3": (8, 12),
        "s4": (4, 6),
        "s5": (2, 3),
    }
    assert all(a.shape[:2] == (1, 5) for a in aux.values())
    # the boosters are not part of the model: its state and export stay the plain network
    assert not any(k.startswith("aux") for k in model.state_dict())
