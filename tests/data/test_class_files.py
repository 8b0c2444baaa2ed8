"""Class files as labelling tools write them (classes.txt with void lines, CVAT's
labelmap.txt, classes.json, classes.csv) and colour-coded masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import ListDataset, data_info, get_preset
from edgeseg.errors import DataError, EdgesegError

COLOURS = {"road": (128, 64, 128), "car": (64, 0, 128), "sky": (128, 128, 128)}
VOID = (0, 0, 0)


def _pairs(root: Path, masks: list[np.ndarray]) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, m in enumerate(masks):
        h, w = m.shape[:2]
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(m).save(root / "masks" / f"{i}.png")


def _colour_mask() -> np.ndarray:
    m = np.zeros((8, 12, 3), np.uint8)  # void everywhere, then three classes
    m[:2] = COLOURS["sky"]
    m[2:5] = COLOURS["car"]
    m[5:7] = COLOURS["road"]
    return m


def _expected_ids(info) -> np.ndarray:
    ids = np.full((8, 12), info.ignore_index, np.int64)
    ids[:2] = info.classes.index("sky")
    ids[2:5] = info.classes.index("car")
    ids[5:7] = info.classes.index("road")
    return ids


def test_classes_txt_with_trailing_void_sets_ignore_index(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\nvoid\n")
    info = data_info(tmp_path)
    assert info.classes == ("sky", "road", "car") and info.ignore_index == 3
    assert info.label_map is None


def test_leading_void_line_remaps_ids(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("Unlabelled\nsky\nroad\n")
    ids = np.array([[0, 1, 2]], np.uint8)
    _pairs(tmp_path, [ids, ids])
    info = data_info(tmp_path)
    assert info.classes == ("sky", "road") and info.ignore_index == 255
    _, label = ListDataset(tmp_path, "train", info).load_pair(0)
    assert label.tolist() == [[255, 0, 1]]


def test_cvat_labelmap_decodes_colour_masks(tmp_path: Path) -> None:
    (tmp_path / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nvoid:0,0,0::\n"
        + "".join(f"{n}:{','.join(map(str, c))}::\n" for n, c in COLOURS.items())
    )
    _pairs(tmp_path, [_colour_mask(), _colour_mask()])
    info = data_info(tmp_path)
    assert info.classes == ("road", "car", "sky") and info.palette[1] == COLOURS["car"]
    ds = ListDataset(tmp_path, "train", info)
    _, label = ds.load_pair(0)
    assert np.array_equal(label, _expected_ids(info))


@pytest.mark.parametrize("form", ["json-list", "json-map", "csv"])
def test_json_and_csv_class_files(tmp_path: Path, form: str) -> None:
    entries = {"void": VOID, **COLOURS}
    if form == "json-list":
        body = [{"name": n, "color": list(c)} for n, c in entries.items()]
        (tmp_path / "classes.json").write_text(json.dumps(body))
    elif form == "json-map":
        (tmp_path / "classes.json").write_text(json.dumps({n: list(c) for n, c in entries.items()}))
    else:
        rows = "".join(f"{n},{c[0]},{c[1]},{c[2]}\n" for n, c in entries.items())
        (tmp_path / "classes.csv").write_text("name,r,g,b\n" + rows)
    _pairs(tmp_path, [_colour_mask(), _colour_mask()])
    info = data_info(tmp_path)
    assert info.classes == ("road", "car", "sky")
    _, label = ListDataset(tmp_path, "train", info).load_pair(0)
    assert np.array_equal(label, _expected_ids(info))


def test_unknown_colours_are_listed_with_pixel_counts(tmp_path: Path) -> None:
    (tmp_path / "labelmap.txt").write_text("road:128,64,128::\nvoid:0,0,0::\n")
    m = _colour_mask()
    _pairs(tmp_path, [m, m])
    with pytest.raises(
        DataError, match=r"2 colour\(s\).*\(64,0,128\) 36 px, \(128,128,128\) 24 px"
    ):
        ListDataset(tmp_path, "train", data_info(tmp_path)).load_pair(0)


def test_camvid_colour_release_reads_with_the_preset_palette(tmp_path: Path) -> None:
    info = get_preset("camvid")
    m = np.zeros((4, 4, 3), np.uint8)
    m[:2] = info.palette[3]  # Road
    _pairs(tmp_path, [m, m])
    _, label = ListDataset(tmp_path, "train", info).load_pair(0)
    assert (label[:2] == 3).all() and (label[2:] == info.ignore_index).all()


def test_explicit_classes_win_and_presets_are_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    assert data_info(tmp_path, "custom", ["x", "y", "z"]).classes == ("x", "y", "z")
    assert data_info(tmp_path).classes == ("a", "b")
    assert data_info(tmp_path / "nowhere").name == "camvid"
    with pytest.raises(EdgesegError, match=r"needs data\.classes"):
        data_info(tmp_path / "nowhere", "custom")


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("labelmap.txt", "road:1,2::\n", "not three values"),
        ("classes.json", "{oops", "not JSON"),
        ("classes.txt", "a\na\n", "named twice"),
        ("classes.txt", "void\n", "names no classes"),
        ("labelmap.txt", "a:1,2,3::\nb:1,2,3::\n", "share a colour"),
    ],
)
def test_malformed_class_files_are_one_line(tmp_path: Path, name, text, needle) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=needle) as e:
        data_info(tmp_path)
    assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)


def test_void_id_error_says_the_fix(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    ids = np.array([[0, 1, 2]], np.uint8)
    _pairs(tmp_path, [ids, ids])
    with pytest.raises(DataError, match=r"set data.ignore_index=2 or add a 'void' line"):
        ListDataset(tmp_path, "train", data_info(tmp_path)).load_pair(0)
