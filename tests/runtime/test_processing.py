"""edgeseg_runtime.processing: the numpy pre/post-processing both segmenters share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.files import collect_images, write_prediction
from edgeseg_runtime.processing import (
    as_rgb,
    legend,
    read_image,
    resize_bilinear,
    to_input,
    to_labels,
)
from PIL import Image

from edgeseg.data import normalize_image


@pytest.mark.parametrize(
    ("src", "dst"),
    [((7, 9), (15, 20)), ((45, 60), (360, 480)), ((360, 480), (97, 131)), ((5, 5), (5, 8))],
)
def test_resize_is_torch_bilinear(src: tuple[int, int], dst: tuple[int, int]) -> None:
    x = np.random.default_rng(0).standard_normal((1, 4, *src)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False)
    # equal to float32 rounding (the order of the products differs)
    np.testing.assert_allclose(resize_bilinear(x, dst), ref.numpy(), atol=1e-4)


def test_input_is_the_datasets_normalisation() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = to_input(rgb, mean, std)
    np.testing.assert_allclose(x[0], normalize_image(rgb, mean, std).numpy(), atol=1e-6)
    assert to_input(rgb, mean, std, (15, 20)).shape == (1, 3, 15, 20)
    assert to_input(rgb, mean, std, layout="NHWC").shape == (1, 30, 40, 3)


def test_labels_resize_logits_then_argmax() -> None:
    logits = np.random.default_rng(2).standard_normal((1, 5, 12, 16)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(logits), size=(24, 32), mode="bilinear").argmax(1)[0]
    assert (to_labels(logits, (24, 32)) == ref.numpy()).all()


def test_rgb_inputs_and_refusals(tmp_path: Path) -> None:
    grey = np.full((4, 5), 7, np.uint8)
    assert as_rgb(grey).shape == (4, 5, 3)
    assert as_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)  # alpha dropped
    with pytest.raises(EdgesegError, match="2 channel"):
        as_rgb(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(EdgesegError, match="uint8"):
        as_rgb(np.zeros((4, 5, 3), np.float32))
    deep = tmp_path / "deep.png"
    Image.fromarray(np.zeros((4, 5), np.uint16)).save(deep)
    with pytest.raises(EdgesegError, match="16-bit"):
        read_image(deep)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(EdgesegError, match=r"junk\.png"):
        read_image(tmp_path / "junk.png")


def test_legend_names_every_class_within_the_width() -> None:
    classes = [f"class{i}" for i in range(11)]
    key = legend(classes, [(i * 20, 0, 0) for i in range(11)], 480)
    assert key.shape[1] == 480 and key.shape[0] >= 20 and key.dtype == np.uint8
    assert len(np.unique(key.reshape(-1, 3), axis=0)) > 11  # swatches, text and background


def test_predictions_and_inputs(tmp_path: Path) -> None:
    rgb = np.zeros((8, 10, 3), np.uint8)
    labels = np.ones((8, 10), np.uint8)
    paths = write_prediction(
        tmp_path, "a", rgb, labels, ["x", "y"], [(0, 0, 0), (255, 0, 0)], legend=True
    )
    lbl = Image.open(paths["labels"])
    assert lbl.mode == "P" and (np.asarray(lbl) == 1).all()  # ids, palette attached
    assert Image.open(paths["overlay"]).size[1] > 8  # the key is under the overlay
    (tmp_path / "in").mkdir()
    (tmp_path / "in2").mkdir()
    for d in ("in", "in2"):
        Image.fromarray(rgb).save(tmp_path / d / "same.png")
    with pytest.raises(EdgesegError, match=r"would both write same\.png"):
        collect_images([tmp_path / "in", tmp_path / "in2"])
    with pytest.raises(EdgesegError, match="no images"):
        collect_images(tmp_path / "in" / ".." / "in2" / "..")  # a folder of folders only


def test_bundle_card_names_its_model() -> None:
    """A bundle card's top-level name is the model's (not "network")."""
    from edgeseg_runtime.card import ModelCard

    card = {
        "name": "ddrnet23_slim",
        "classes": ["a", "b"],
        "palette": [[0, 0, 0], [9, 9, 9]],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    assert ModelCard.from_mapping(card, "model.json").name == "ddrnet23_slim"
    onnx_meta = {**card, "name": None, "model": {"name": "segfast"}}
    assert ModelCard.from_mapping(onnx_meta, "x.onnx").name == "segfast"
