"""Fast-SCNN: counts against the reference code; auxiliary heads stay out of the graph."""

from __future__ import annotations

import torch

from edgeseg.measure.counts import param_count
from edgeseg.models import create_model
from edgeseg.models.fastscnn import GLOBAL


def test_counts_equal_the_reference_code() -> None:
    # Tramac/Fast-SCNN-pytorch's FastSCNN(19, aux=False): 1,138,051 (the paper: "1.11 M").
    # Its one auxiliary layer (on the 1/8 features) is 19,123; edgeseg adds the paper's
    # second, on the global features (37,555).
    with torch.device("meta"):
        model = create_model("fastscnn", num_classes=19)
        heads = model.aux_heads()
    assert param_count(model) == 1_138_051
    assert param_count(heads["ltd"]) == 19_123
    assert param_count(heads) == 19_123 + 37_555


def test_table_1_rows() -> None:
    # (t, c, n, s) = (6, 64, 3, 2), (6, 96, 3, 2), (6, 128, 3, 1)
    assert [r.cout for r in GLOBAL] == [64] * 3 + [96] * 3 + [128] * 3
    assert [r.stride for r in GLOBAL] == [2, 1, 1, 2, 1, 1, 1, 1, 1]
    assert all(r.exp == 6 * r.cin for r in GLOBAL)


def test_taps_and_plain_forward() -> None:
    model = create_model("fastscnn", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        logits, taps = model.forward_taps(x)
        plain = model(x)
        _, aux = model.forward_aux(x, model.aux_heads().eval())
    assert logits.shape == plain.shape == (1, 5, 64, 96)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "ltd": (64, 8, 12),
        "gfe": (128, 2, 3),
    }
    assert [a.shape for a in aux] == [(1, 5, 64, 96)] * 2
    assert not any(k.startswith("aux") for k in model.state_dict())
