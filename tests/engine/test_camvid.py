"""Training on real CamVid for a few minutes (slow; skipped when the data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.config import load_config
from edgeseg.data import ListDataset, class_frequencies, get_preset
from edgeseg.engine.train import train

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason=f"no CamVid at {CAMVID}"),
]


def _subset(root: Path, n_train: int) -> Path:
    """A data root whose lists point (absolute paths) at the first CamVid images."""
    root.mkdir()
    train_lines = (CAMVID / "train.txt").read_text().split("\n")[:n_train]
    for split, lines in (
        ("train", train_lines),
        ("val", (CAMVID / "val.txt").read_text().split("\n")),
    ):
        pairs = [line.split() for line in lines if line.strip()]
        (root / f"{split}.txt").write_text(
            "".join(f"{CAMVID / a} {CAMVID / b}\n" for a, b in pairs)
        )
    return root


def test_squeeze_unet_learns_camvid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))
    data = _subset(tmp_path / "camvid", n_train=96)
    # Half-resolution (180x240) keeps this to about three minutes on 2 cores.
    cfg = load_config(
        None,
        [
            f"data.root={data}",
            "data.preset=camvid",
            "data.crop_size=176x240",
            "data.scale=[0.5, 0.5]",
            "data.eval_size=180x240",
            "data.in_memory=true",
            "optim.lr=2e-3",
            "train.epochs=2",
            "train.batch_size=8",
            "train.progress=false",
            "train.threads=2",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    res = train(cfg)
    losses = [r["train_loss"] for r in res.history]
    assert losses[1] < losses[0], losses
    # Baseline: the most frequent val class predicted everywhere has IoU = its frequency,
    # every other class IoU 0, so mIoU = p_max / 11.
    val = ListDataset(data, "val", get_preset("camvid"))
    baseline = max(class_frequencies(val)["frequencies"]) / 11
    miou = res.history[-1]["val_miou"]
    print(
        f"CamVid half-res, 2 epochs on 96 images: losses {losses}, val mIoU {miou:.4f}, "
        f"constant baseline {baseline:.4f}, {res.train_seconds:.0f} s"
    )
    assert miou > 2 * baseline, (miou, baseline)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert np.isfinite([r["train_loss"] for r in rows]).all()
