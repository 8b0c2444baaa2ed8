from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeseg.losses import SegmentationLoss, log_frequency_weights


def test_log_frequency_weights_formula() -> None:
    w = log_frequency_weights([0.5, 0.3, 0.2, 0.0], c=1.02)
    np.testing.assert_allclose(w, 1 / np.log(1.02 + np.array([0.5, 0.3, 0.2, 0.0])))
    assert w[3] == pytest.approx(1 / math.log(1.02))  # the bound for an absent class
    assert (np.diff(w[:3]) > 0).all()  # rarer classes weigh more
    # Unnormalised counts give the same weights; the thesis' c = 1.10 is flatter.
    np.testing.assert_allclose(log_frequency_weights([5, 3, 2, 0]), w)
    assert log_frequency_weights([0.5, 0.5, 0.0], c=1.10).max() < w.max()


@pytest.mark.parametrize(("freq", "c"), [([0.5, 0.5], 1.0), ([-1, 2], 1.02), ([0, 0], 1.02)])
def test_log_frequency_weights_rejects(freq: list[float], c: float) -> None:
    with pytest.raises(ValueError):
        log_frequency_weights(freq, c=c)


def test_ce_and_nll_agree_and_ignore_void() -> None:
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0, :] = 11  # void
    w = log_frequency_weights([0.4, 0.3, 0.2, 0.1])
    ce = SegmentationLoss("ce", weight=w, ignore_index=11)(logits, target)
    nll = SegmentationLoss("nll", weight=w, ignore_index=11)(logits, target)
    torch.testing.assert_close(ce, nll)
    # Void pixels contribute nothing: changing their logits leaves the loss unchanged.
    logits2 = logits.clone()
    logits2[0, :, 0, :] = 100.0
    torch.testing.assert_close(
        SegmentationLoss("ce", weight=w, ignore_index=11)(logits2, target), ce
    )


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationLoss("focal")


def test_label_smoothing_mixes_in_the_uniform_target() -> None:
    # (1 - e) * CE(target) + e * mean over classes of -log p: what the recipe option trains
    logits = torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    e = 0.1
    logp = logits.log_softmax(1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    expected = ((1 - e) * nll - e * logp.mean(1)).mean()
    smoothed = SegmentationLoss("ce", label_smoothing=e)(logits, target)
    torch.testing.assert_close(smoothed, expected)
    assert not torch.allclose(smoothed, SegmentationLoss("ce")(logits, target))
