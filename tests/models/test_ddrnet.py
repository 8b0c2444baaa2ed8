"""DDRNet-23-slim: counts against the authors' code; the deep-supervision head stays out of
the graph; both branches keep their resolutions."""

from __future__ import annotations

import torch

from edgeseg.measure.counts import param_count
from edgeseg.models import create_model
from edgeseg.models.ddrnet import DAPPM, SLIM


def test_counts_equal_the_authors_code() -> None:
    # ydhongHIT/DDRNet segmentation/DDRNet_23_slim.py, DualResNet(BasicBlock, [2, 2, 2, 2],
    # num_classes=19, planes=32, spp_planes=128, head_planes=64): 5,695,987 (the paper:
    # "5.7 M"); with augment=True its extra head adds 38,355.
    with torch.device("meta"):
        model = create_model("ddrnet23_slim", num_classes=19)
        heads = model.aux_heads()
    assert param_count(model) == 5_695_987
    assert param_count(heads) == 38_355
    # DAPPM on 512 channels: 5 x (BN + 1x1 to 128), 4 x (BN + 3x3 128), compression
    # (BN + 1x1 640 -> 128), shortcut (BN + 1x1 512 -> 128)
    assert param_count(model.dappm) == 5 * 66_560 + 4 * 147_712 + 83_200 + 66_560


def test_table_1_rows() -> None:
    # conv4: low 128 / high 64, conv5_1: low 256 / high 64, two basic blocks each
    assert [(r.low, r.high, r.blocks) for r in SLIM] == [(128, 64, 2), (256, 64, 2)]
    assert [k for k, _ in DAPPM.POOLS] == [5, 9, 17, 0]


def test_branch_resolutions_and_plain_forward() -> None:
    model = create_model("ddrnet23_slim", num_classes=5).eval()
    x = torch.randn(1, 3, 72, 100)  # not multiples of 64: the model pads to 8 only
    seen: dict[str, tuple[int, ...]] = {}
    model.low_last.register_forward_hook(lambda m, i, o: seen.update(low=tuple(o.shape[1:])))
    model.high_last.register_forward_hook(lambda m, i, o: seen.update(high=tuple(o.shape[1:])))
    with torch.inference_mode():
        logits, taps = model.forward_taps(model.pad(x))
        plain = model(x)
        _, aux = model.forward_aux(x, model.aux_heads().eval())
    assert plain.shape == (1, 5, 72, 100) and logits.shape == (1, 5, 72, 104)
    assert seen == {"low": (512, 2, 2), "high": (128, 9, 13)}  # 1/64 and 1/8
    assert tuple(taps["high"].shape[1:]) == (64, 9, 13)
    assert [a.shape for a in aux] == [(1, 5, 72, 100)]
    assert not any(k.startswith("aux") for k in model.state_dict())


def test_stages_cover_every_parameter_once() -> None:
    # the profiler times stages; ModuleLists are split so each timed module really runs
    with torch.device("meta"):
        model = create_model("ddrnet23_slim", num_classes=11)
    stages = model.stages()
    assert [n for n, _ in stages][:4] == ["stem", "low.0", "high.0", "fusions.0"]
    assert sum(param_count(m) for _, m in stages) == param_count(model)
