"""Evaluation: confusion matrix over a split, JSON keys, the paper's batch protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from edgeseg.data import custom_info
from edgeseg.engine.checkpoint import load_checkpoint
from edgeseg.engine.evaluate import evaluate
from edgeseg.errors import EdgesegError

INFO = custom_info(["a", "b", "c"])
KEYS = {"miou", "pixel_acc", "mean_acc", "iou", "tp_rate", "fp_tp", "num_images", "input_size"}


class Constant(nn.Module):
    """Predicts class ``k`` everywhere."""

    def __init__(self, k: int, classes: int = 3) -> None:
        super().__init__()
        self.k, self.classes = k, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.classes, *x.shape[2:])
        out[:, self.k] = 1.0
        return out


def _truth(root: Path, split: str) -> np.ndarray:
    labels = []
    for line in (root / f"{split}.txt").read_text().split("\n"):
        if line:
            labels.append(np.asarray(Image.open(root / line.split()[1])).reshape(-1))
    return np.concatenate(labels)


def test_constant_prediction_matches_hand_computed_metrics(tiny_run: tuple[Path, Path]) -> None:
    data, _ = tiny_run
    res = evaluate(Constant(1), data, "val", info=INFO, batch_size=2)
    assert set(res) >= KEYS
    t = _truth(data, "val")
    t = t[t != 255]
    n1 = int((t == 1).sum())
    assert res["num_images"] == 5 and res["input_size"] == [40, 56]
    assert res["pixel_acc"] == pytest.approx(n1 / t.size)
    assert res["iou"]["b"] == pytest.approx(n1 / t.size)  # TP / (TP + FP + FN) = n1 / all
    assert res["iou"]["a"] == 0.0 and res["tp_rate"]["a"] == 0.0
    assert res["fp_tp"]["b"] == pytest.approx((t.size - n1) / n1)
    assert res["fp_tp"]["a"] is None  # no true positives: undefined
    assert res["miou"] == pytest.approx(n1 / t.size / 3)
    assert res["mean_acc"] == pytest.approx(1 / 3)
    cm = np.asarray(res["confusion_matrix"])
    assert cm.sum() == t.size and (cm[:, [0, 2]] == 0).all()


def test_checkpoint_eval_matches_training_validation(tiny_run: tuple[Path, Path]) -> None:
    data, run = tiny_run
    res = evaluate(run, data, "val")
    best = load_checkpoint(run / "best.pt")
    assert res["miou"] == pytest.approx(best["metrics"]["miou"], abs=1e-9)
    assert res["model"] == "squeeze_unet" and res["checkpoint"].endswith("best.pt")
    assert list(res["iou"]) == ["a", "b", "c"]


def test_paper_protocol_and_resize(tiny_run: tuple[Path, Path]) -> None:
    data, run = tiny_run
    res = evaluate(run / "last.pt", data, "train", paper_protocol=True, input_size=(20, 28))
    assert res["input_size"] == [20, 28] and res["num_images"] == 8
    b = res["batches"]
    assert b["batch_size"] == 8 and b["count"] == 1
    for metric in ("tp_rate", "iou", "fp_tp"):
        s = b[metric]["a"]
        assert s["mean"] is None or s["min"] <= s["mean"] <= s["max"]
    # with one batch, the batch statistics equal the overall ones
    assert b["iou"]["b"]["mean"] == pytest.approx(res["iou"]["b"])


def test_class_count_mismatch(tiny_run: tuple[Path, Path]) -> None:
    data, run = tiny_run
    with pytest.raises(EdgesegError, match=r"predicts 3 classes, the camvid data has 11"):
        evaluate(run, data, "val", info="camvid")


def test_a_checkpoint_is_scored_with_the_normalisation_it_was_trained_with(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """The data's info says what the labels mean, not how the network's input was
    normalised: an ImageNet encoder's [-1, 1] scaling must survive ``info=`` (compare
    passes the data's), or a pretrained model is scored on inputs it never saw."""
    data, run = tiny_run
    ckpt = load_checkpoint(run / "best.pt")
    ckpt.pop("path")
    ckpt["dataset"] = {**ckpt["dataset"], "mean": [0.5] * 3, "std": [0.5] * 3}
    torch.save(ckpt, tmp_path / "m.pt")
    own = evaluate(tmp_path / "m.pt", data, "val")
    given = evaluate(tmp_path / "m.pt", data, "val", info=custom_info(["a", "b", "c"]))
    assert given["miou"] == own["miou"]
    assert np.array_equal(given["confusion_matrix"], own["confusion_matrix"])


def test_eval_result_is_typed_versioned_and_prints_its_table() -> None:
    from edgeseg.engine.evaluate import EVAL_SCHEMA, EvalResult
    from edgeseg.errors import EdgesegError

    old = {  # a result written before the schema existed still loads
        "miou": 0.5,
        "pixel_acc": 0.9,
        "mean_acc": 0.6,
        "iou": {"a": 0.4, "b": 0.6},
        "tp_rate": {"a": 0.5, "b": 0.7},
        "fp_tp": {"a": None, "b": 0.25},
        "num_images": 3,
        "split": "val",
        "model": "l3unet",
    }
    res = EvalResult.from_dict(old)
    assert res["schema"] == EVAL_SCHEMA and res.miou == 0.5 and res.iou == {"a": 0.4, "b": 0.6}
    assert res.to_dict() == {**old, "schema": EVAL_SCHEMA}
    text = res.table()
    assert text.startswith("l3unet on val (3 images): mIoU 0.5000, pixel acc 0.9000")
    row_b = next(line for line in text.splitlines() if line.startswith("b "))
    assert row_b.split() == ["b", "0.6000", "0.7000", "0.250"]
    with pytest.raises(EdgesegError, match="schema"):
        EvalResult.from_dict({**old, "schema": "edgeseg.eval/99"})
