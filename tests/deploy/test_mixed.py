"""Mixed precision: module scopes of exported nodes, per-module sensitivity, and the search
that keeps the fewest modules in fp32 within an mIoU budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeseg.deploy.export import export_onnx
from edgeseg.deploy.mixed import Scorer, Sensitivity, mixed_precision, sensitivity
from edgeseg.deploy.quantize import quantize_onnx
from edgeseg.deploy.scopes import module_groups, nodes_in_modules, truncate

pytestmark = pytest.mark.filterwarnings("ignore")


class _Outlier(nn.Module):
    """Three conv blocks; the tensor between ``stem`` and ``mid`` has one channel 1000x
    the others, so per-tensor uint8 activations crush the rest. ORT quantizes a tensor
    when its producer or its consumer is int8: only both in fp32 save it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 4, 1))
        with torch.no_grad():
            self.stem[0].weight[0] *= 1000
            self.stem[0].bias[0] = 1000.0
            self.mid[0].weight[:, 0] = 0.0  # fp32 ignores the outlier channel
            self.mid[0].bias.zero_()
            self.head[0].bias.zero_()  # the classes follow the image, not the biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mid(self.stem(x)))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[torch.Tensor], Scorer]:
    """The fp32 file, calibration images, and a scorer whose labels are fp32's own
    predictions (fp32 scores 1.0)."""
    torch.manual_seed(0)
    model = _Outlier().eval()
    path = tmp_path_factory.mktemp("mixed") / "fp32.onnx"
    export_onnx(model, path, input_size=(16, 16))
    images = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        labels = model(images).argmax(1).numpy()
    return path, list(images), Scorer(images, labels, 4)


def test_truncate_counts_an_index_with_its_container() -> None:
    assert truncate("encoder.stages.6.0.dw", 2) == "encoder.stages.6"
    assert truncate("encoder.stages.6.0.dw", 3) == "encoder.stages.6.0"
    assert truncate("layer3.0.conv1", 1) == "layer3.0"
    assert truncate("decoder.head", None) == "decoder.head"


def test_module_groups_and_nodes_follow_the_pytorch_modules(case: tuple) -> None:
    path, _, _ = case
    assert module_groups(path, 1) == {"stem.0": 1, "mid.0": 1, "head.0": 1}
    nodes = nodes_in_modules(path, ["mid"])
    assert len(nodes) == 2  # the conv, and its ReLU (a sibling module) that reads only it
    assert nodes_in_modules(path, []) == []


def test_sensitivity_names_the_module_int8_breaks(case: tuple, tmp_path: Path) -> None:
    path, calib, score = case
    sens = sensitivity(path, calib, score, depth=1, workdir=tmp_path)
    assert sens.fp32_miou == pytest.approx(1.0)
    assert sens.int8_miou < 0.9
    assert [p.module for p in sens.parts] == ["stem.0", "mid.0", "head.0"]
    assert {p.module for p in sens.ranked()[:2]} == {"stem.0", "mid.0"}
    assert sens.parts[0].int8_alone < 0.1  # the stem alone in int8 breaks it
    assert "mid.0" in sens.table()
    assert Sensitivity.from_dict(sens.to_dict()) == sens


def test_mixed_precision_keeps_the_fewest_modules_within_the_budget(
    case: tuple, tmp_path: Path
) -> None:
    path, calib, score = case
    res = mixed_precision(path, tmp_path / "mixed.onnx", calib, score, 0.1)
    assert res.met and res.miou >= res.fp32_miou - 0.1
    assert set(res.kept_fp32) == {"stem.0", "mid.0"}  # the head's int8 costs < 0.1
    assert res.sensitivity is not None
    assert res.steps[0]["kept_fp32"] == []  # all-int8 was tried first
    assert score(tmp_path / "mixed.onnx") == pytest.approx(res.miou)
    assert res.quantization["fp32_layers"]  # the kept conv, named in the report
    assert "kept fp32" in _precision(tmp_path / "mixed.onnx")


def test_a_met_budget_needs_no_search(case: tuple, tmp_path: Path) -> None:
    path, calib, score = case
    res = mixed_precision(path, tmp_path / "int8.onnx", calib, score, 0.995)
    assert res.kept_fp32 == [] and res.sensitivity is None and len(res.steps) == 1


def test_keep_fp32_leaves_those_nodes_unquantized(case: tuple, tmp_path: Path) -> None:
    path, calib, _ = case
    full = quantize_onnx(path, tmp_path / "a.onnx", calib)
    # mid alone: its input and output stay int8 tensors, and ONNX Runtime quantizes a
    # conv between a dequantize and a quantize itself; the report counts what really runs
    alone = quantize_onnx(
        path, tmp_path / "c.onnx", calib, keep_fp32=nodes_in_modules(path, ["mid"])
    )
    assert alone.quantized_layers == full.quantized_layers == 3
    both = nodes_in_modules(path, ["stem", "mid"])
    kept = quantize_onnx(path, tmp_path / "b.onnx", calib, keep_fp32=both)
    assert kept.quantized_layers == 1 and len(kept.fp32_layers) == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert _run(tmp_path / "b.onnx", x).shape == (1, 4, 16, 16)


def _precision(path: Path) -> str:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return meta.get("edgeseg.precision", "")


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_a_zero_budget_keeps_every_part_it_needs(case: tuple, tmp_path: Path) -> None:
    path, calib, score = case
    res = mixed_precision(path, tmp_path / "m.onnx", calib, score, 0.0, depth=99)
    # every part fp32 scores 1.0 here, so even a zero budget is met by keeping them all
    assert res.met and len(res.kept_fp32) == 3
