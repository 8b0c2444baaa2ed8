"""Segmenter (numpy / PIL / path) and predict_paths (label PNGs and overlays)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.deploy.segmenter import Segmenter, colorize, overlay, predict_paths
from edgeseg.errors import DataError, EdgesegError


def test_segmenter_inputs(tiny_run: tuple[Path, Path]) -> None:
    data, run = tiny_run
    seg = Segmenter(run, threads=1)
    assert seg.classes == ("a", "b", "c")
    path = data / "val" / "000.png"
    rgb = np.asarray(Image.open(path))
    labels = seg(rgb)
    assert labels.shape == (40, 56) and labels.dtype == np.uint8 and labels.max() < 3
    assert np.array_equal(seg(Image.open(path)), labels)
    assert np.array_equal(seg(path), labels)
    assert seg(rgb[:, :, 0]).shape == (40, 56)  # grayscale is replicated
    assert seg(rgb[:33, :41]).shape == (33, 41)  # any size
    resized = Segmenter(run, input_size=(24, 32))
    assert resized(rgb).shape == (40, 56)  # logits resized back to the image
    ov = seg.overlay(rgb, labels)
    assert ov.shape == (40, 56, 3) and ov.dtype == np.uint8
    with pytest.raises(EdgesegError, match="expected a uint8 image"):
        seg(rgb.astype(np.float32))


def test_colorize_and_overlay() -> None:
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    col = colorize(labels, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert col[0, 0].tolist() == [255, 0, 0] and col[1, 1].tolist() == [0, 0, 0]
    img = np.full((2, 2, 3), 100, np.uint8)
    assert overlay(img, col, alpha=0.0).tolist() == img.tolist()


def test_predict_paths_writes_labels_and_overlays(
    tiny_run: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    data, run = tiny_run
    written = predict_paths(run, data / "test", tmp_path / "out")
    assert len(written) == 3
    seg = Segmenter(run)
    for w in written:
        lbl = Image.open(w["labels"])
        assert lbl.mode == "P" and lbl.size == (56, 40)
        assert np.array_equal(np.asarray(lbl), seg(w["image"]))
        assert Image.open(w["overlay"]).mode == "RGB"
    single = predict_paths(run, data / "test" / "001.png", tmp_path / "one")
    assert Path(single[0]["labels"]).name == "001.png"


def test_predict_legend_puts_the_class_key_under_each_overlay(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from edgeseg.cli import main

    data, run = tiny_run
    image = data / "test" / "001.png"
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p"), "--legend"]) == 0
    plain = predict_paths(run, image, tmp_path / "q")[0]
    keyed = Image.open(tmp_path / "p" / "overlays" / "001.png")
    w, h = Image.open(plain["overlay"]).size
    assert keyed.size[0] == w and keyed.size[1] > h  # the key is below, same width
    top = np.asarray(keyed)[:h]
    assert np.array_equal(top, np.asarray(Image.open(plain["overlay"])))  # overlay unchanged


def test_predict_paths_builds_one_segmenter_for_many_inputs(
    tiny_run: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgeseg.deploy.segmenter as segmenter

    data, run = tiny_run
    built = []
    real = segmenter.Segmenter

    def counting(*a: object, **kw: object) -> Segmenter:
        built.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(segmenter, "Segmenter", counting)
    files = sorted((data / "test").iterdir())
    written = predict_paths(run, [files[0], data / "test"], tmp_path / "out")
    # files[0] is named twice (alone and in its folder): it is segmented once
    assert len(written) == len(files) and len(built) == 1
    # A missing item fails before any network is built or anything is written.
    with pytest.raises(DataError, match=r"missing\.png"):
        predict_paths(run, [files[0], tmp_path / "missing.png"], tmp_path / "none")
    assert len(built) == 1 and not (tmp_path / "none").exists()


def test_predict_bad_inputs(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = tiny_run
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images .* in .*empty"):
        predict_paths(run, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match=r"image or folder not found: .*missing\.png"):
        predict_paths(run, tmp_path / "missing.png", tmp_path / "out")


@pytest.mark.slow
def test_predict_on_ray_equals_predict_paths(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from edgeseg.cli import main

    data, run = tiny_run
    images = data / "val"
    predict_paths(run / "best.pt", images, tmp_path / "one", threads=1)
    args = [
        "predict",
        str(run / "best.pt"),
        str(images),
        "--out",
        str(tmp_path / "ray"),
        "--ray",
        "local",
        "--actors",
        "2",
        "--threads",
        "1",
        "--no-overlays",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "one" / "labels").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "ray" / "labels").glob("*.png"))
    for n in names:
        a = np.asarray(Image.open(tmp_path / "one" / "labels" / n))
        assert (a == np.asarray(Image.open(tmp_path / "ray" / "labels" / n))).all()
    assert not (tmp_path / "ray" / "overlays").exists()
    assert main(args) == 0  # a second run finds every image done
    summary = json.loads((tmp_path / "ray" / "predict_summary.json").read_text())
    assert summary["skipped"] == len(names) and summary["written"] == 0
