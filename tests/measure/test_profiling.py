from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgeseg.cpu import cpu_isa, cpu_name
from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import count_flops, paper_macs
from edgeseg.measure.profiling import ProfileResult, profile
from edgeseg.measure.timing import measure_peak_memory, measure_stage_times, num_threads
from edgeseg.models import create_model

STABLE_KEYS = {
    "model",
    "input_size",
    "num_classes",
    "params",
    "conv_weights",
    "size_bytes",
    "macs",
    "flops",
    "paper_macs",
    "latency_ms",
    "memory_format",
    "threads",
    "peak_memory_bytes",
    "stages",
}


@pytest.fixture(scope="module")
def result() -> ProfileResult:
    return profile("squeeze_unet", "64x96", num_classes=5, threads=1, warmup=1, repeats=3)


def test_profile_json_has_the_documented_keys(result: ProfileResult) -> None:
    d = json.loads(json.dumps(result.to_dict()))
    assert set(d) >= STABLE_KEYS
    assert d["input_size"] == [64, 96] and d["num_classes"] == 5 and d["threads"] == 1
    assert set(d["latency_ms"]) == {"median", "p90"}
    lat = d["latency_ms"]  # structure, not speed: two floats, the 90th percentile not below
    assert all(isinstance(v, float) for v in lat.values()) and max(lat.values()) == lat["p90"]
    assert d["memory_format"] in ("contiguous", "channels_last")
    assert d["latency_ms"] == d["latency_by_format"][d["memory_format"]]
    assert [s["name"] for s in d["stages"]] == [
        "stem",
        "ds1",
        "ds2",
        "ds3",
        "ds4",
        "us1",
        "us2",
        "us3",
        "head",
    ]
    # shares are measured times (their sum moves with the machine's load): structure only
    assert all(isinstance(s["share"], float) and s["share"] >= 0 for s in d["stages"])
    assert d["flops"] == 2 * d["macs"]
    assert d["bn_folded"] is True


def test_profile_counts(result: ProfileResult) -> None:
    assert result.conv_weights == 2_613_952 + 64 * 5
    # fp32 weights plus BN buffers: a little over 4 bytes per parameter.
    assert 4 * result.params < result.size_bytes < 4.2 * result.params
    # Weights and input are resident; activations of a 64x96 pass add more.
    assert result.peak_memory_bytes > 4 * result.params + 3 * 64 * 96 * 4


def test_flop_counter_counts_transposed_and_grouped_convs() -> None:
    x = torch.randn(1, 8, 10, 10)
    tconv = nn.ConvTranspose2d(8, 4, 2, stride=2)  # charged at its 10x10 input pixels
    assert count_flops(tconv, x) == 2 * 8 * 4 * 4 * 100
    gconv = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # 2 input channels per output
    assert count_flops(gconv, x) == 2 * 8 * 2 * 9 * 100
    # The paper's convention charges the transposed conv at its 20x20 output pixels.
    assert paper_macs(tconv, x) == 2 * 8 * 4 * 4 * 400


def test_paper_macs_ignores_padding() -> None:
    with torch.device("meta"):
        model = create_model("squeeze_unet", num_classes=11).eval()
    a = paper_macs(model, torch.empty(1, 3, 360, 480, device="meta"))  # padded to 368
    b = paper_macs(model, torch.empty(1, 3, 368, 480, device="meta"))
    assert a == pytest.approx(b * 360 / 368, rel=1e-9)


def test_stage_times_cover_every_stage_and_their_shares() -> None:
    # No comparison of measured times (flaky under load): every stage is timed, and the
    # shares are each stage's part of the same runs.
    model = create_model("unet", num_classes=3).eval()
    stages, total = measure_stage_times(model, torch.randn(1, 3, 32, 32), repeats=3)
    assert [s.name for s in stages] == [n for n, _ in model.stages()] and isinstance(total, float)
    assert all(s.share == pytest.approx(s.ms / total) for s in stages)
    assert sum(s.share for s in stages) == pytest.approx(sum(s.ms for s in stages) / total)


def test_peak_memory_sees_a_large_activation() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1)).eval()
    peak = measure_peak_memory(model, torch.randn(1, 3, 128, 128))
    assert peak >= 64 * 128 * 128 * 4  # the output alone


def test_num_threads_restores() -> None:
    before = torch.get_num_threads()
    with num_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": "64by64"}, "input_size"),
        ({"threads": 0}, "threads"),
        ({"repeats": -1}, "repeats"),
        ({"memory_formats": ("nhwc",)}, "memory_formats"),
    ],
)
def test_profile_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"input_size": "32x32", "repeats": 1, "warmup": 1, **kwargs}
    with pytest.raises(EdgesegError, match=match):
        profile("unet", **args)


def test_cpu_isa_names_the_widest_level() -> None:
    assert cpu_isa({"sse2", "avx", "avx2", "fma"}) == "AVX2"
    assert cpu_isa({"avx2", "avx512f", "avx512_vnni"}) == "AVX-512 VNNI"
    assert cpu_isa({"avx2", "avx_vnni"}) == "AVX2 + AVX-VNNI"
    assert cpu_isa({"fp", "asimd", "asimddp"}) == "NEON dot-product"
    assert cpu_isa(set()) == ""
    name = cpu_name()
    assert name and (cpu_isa() == "" or name.endswith(f"[{cpu_isa()}]"))
