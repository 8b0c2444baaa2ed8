"""FCN on ResNet-50 (seed 003, spec section 5)."""

from __future__ import annotations

import torch

from edgeseg.measure.counts import param_count
from edgeseg.models import create_model


def _meta(**kw: object) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model("fcn_resnet50", num_classes=13, **kw)


def test_reference_configuration_count() -> None:
    """With the reference's extra 1x1 K->K + sigmoid layer: 23,534,915 at K=13."""
    assert param_count(_meta(head_sigmoid=True)) == 23_534_915


def test_default_drops_the_sigmoid_layer() -> None:
    """edgeseg's default outputs logits: the reference less 13 * 13 + 13 = 182."""
    assert param_count(_meta()) == 23_534_915 - 182


def test_sigmoid_head_outputs_probabilities() -> None:
    model = create_model("fcn_resnet50", num_classes=3, head_sigmoid=True).eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 3, 40, 56))
    assert y.shape == (1, 3, 40, 56)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_resnet50_body() -> None:
    model = _meta()
    blocks = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    assert blocks == [3, 4, 6, 3]
    assert model.stem[0][0].bias is not None  # the 7x7 stem conv keeps its bias
    assert model.output_stride == 32
