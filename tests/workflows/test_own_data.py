"""A user's own data as it comes, end to end: id masks with a void id named in
classes.txt, JPEG images, and colour masks with CVAT's labelmap.txt, each built from real
CamVid pairs; every command runs on each with no flag about the format, and the user's
class names reach every output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import main
from edgeseg.data import get_preset

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="CamVid is not beside"),
]
NAMES = [f"my_{n.lower()}" for n in get_preset("camvid").classes]  # the user's own names
SIZE = (128, 96)  # W, H: small, so each command takes seconds


def _build(root: Path, form: str, n: int = 6) -> Path:
    info = get_preset("camvid")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines = (CAMVID / "train.txt").read_text().split("\n")[:n]
    for i, line in enumerate(lines):
        img_rel, lbl_rel = line.split()
        img = Image.open(CAMVID / img_rel).convert("RGB").resize(SIZE, Image.BILINEAR)
        ids = np.asarray(Image.open(CAMVID / lbl_rel).resize(SIZE, Image.NEAREST))
        img.save(root / "images" / f"f{i}.{'png' if form == 'ids' else 'jpg'}")
        if form == "colour":
            pal = np.array([*info.palette, *[(0, 0, 0)] * (256 - len(info.palette))], np.uint8)
            Image.fromarray(pal[ids]).save(root / "masks" / f"f{i}.png")
        else:
            Image.fromarray(ids.astype(np.uint8)).save(root / "masks" / f"f{i}.png")
    if form == "colour":
        rows = [f"{n}:{','.join(map(str, c))}::" for n, c in zip(NAMES, info.palette, strict=True)]
        text = "# label:color_rgb:parts:actions\n" + "\n".join([*rows, "void:0,0,0::"]) + "\n"
        (root / "labelmap.txt").write_text(text)
    else:  # CamVid's void id 11 is the file's last line
        (root / "classes.txt").write_text("\n".join([*NAMES, "void"]) + "\n")
    return root


@pytest.mark.parametrize("form", ["ids", "jpeg", "colour"])
def test_every_command_reads_the_users_data(tmp_path: Path, form: str, capsys) -> None:
    from edgeseg_runtime.cli import main as run_main

    data = _build(tmp_path / "data", form)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    small = ["train.batch_size=2", "data.crop_size=96x128", "train.progress=false"]
    assert main(["data", "check", str(data)]) == 0
    assert "my_road" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--model",
                "segfast",
                "--data",
                str(data),
                "--epochs",
                "1",
                "--out",
                str(run),
                *small,
            ]
        )
        == 0
    )
    assert main(["eval", str(run), "--data", str(data)]) == 0
    assert "my_road" in capsys.readouterr().out
    assert main(["predict", str(run), str(data / "images"), "--out", str(tmp_path / "p")]) == 0
    assert len(list((tmp_path / "p" / "labels").glob("*.png"))) == 6
    if form != "colour":
        return  # the forms differ in how masks are read: bundle and compare take the hardest
    # With --data the bundle's backends are scored on the user's masks (int8 included).
    assert main(["export", str(run), "--bundle", str(bundle), "--data", str(data)]) == 0
    card = json.loads((bundle / "model.json").read_text())
    assert "my_road" in json.dumps(card)
    image = next((data / "images").iterdir())
    assert run_main(["predict", str(bundle), str(image), "--out", str(tmp_path / "q")]) == 0
    assert list((tmp_path / "q").rglob("*.png"))
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--models",
            "segfast",
            "--data",
            str(data),
            "--budget",
            "1 epochs",
            "--out",
            str(out),
            "--backends",
            "eager,ort",
            "recipe.data.crop_size=96x128",
            "recipe.train.batch_size=2",
        ]
    )
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["classes"] == NAMES
    assert "my_road" in (out / "report.md").read_text()
    # compare's artefacts carry the metadata edgeseg-run needs: ready to deploy
    onnx = out / "artefacts" / "segfast" / "fp32.onnx"
    assert run_main(["predict", str(onnx), str(image), "--out", str(tmp_path / "r")]) == 0
