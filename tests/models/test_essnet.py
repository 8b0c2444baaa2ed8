"""The ESSNet family against the spec: counts, grouping deltas, shuffle, decoder variants."""

from __future__ import annotations

import pytest
import torch

from edgeseg.layers import ChannelShuffle, ConvModule, parse_layer
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model

K = 20
DEAD_ENCODER_CLASSIFIER = 128 * K + K  # counted by the reference code for ESSNet only


def _p(name: str, **kw: object) -> int:
    with torch.device("meta"):
        return param_count(create_model(name, num_classes=K, **kw))


def test_essnet_b_counts_equal_the_reference() -> None:
    got = [_p("essnet_b", layer=x) for x in ("D", "DG2", "DG4", "DG8")]
    assert got == [578_304, 426_752, 350_976, 313_088]


def test_essnet_a_counts_equal_the_reference() -> None:
    got = [_p("essnet_a", layer=x) for x in ("DG2", "DG4", "DG8")]
    assert got == [1_267_328, 1_230_464, 1_212_032]


def test_essnet_counts_are_the_reference_minus_its_dead_classifier() -> None:
    reference = [423_636, 272_084, 196_308]  # D, DG2, DG4 (spec, reference code)
    got = [_p("essnet", layer=x) for x in ("D", "DG2", "DG4")]
    assert got == [r - DEAD_ENCODER_CLASSIFIER for r in reference]


def test_grouping_deltas_match_the_thesis() -> None:
    e = [_p("essnet", layer=x) for x in ("D", "DG2", "DG4")]
    assert (e[1] - e[0], e[2] - e[1]) == (-151_552, -75_776)
    b = [_p("essnet_b", layer=x) for x in ("DG2", "DG4", "DG8")]
    assert (b[1] - b[0], b[2] - b[1]) == (-75_776, -37_888)
    a = [_p("essnet_a", layer=x) for x in ("DG2", "DG4", "DG8")]
    assert (a[1] - a[0], a[2] - a[1]) == (-36_864, -18_432)


def test_shuffle_adds_no_parameters_and_changes_the_function() -> None:
    assert _p("essnet", layer="DG4", shuffle=True) == _p("essnet", layer="DG4")
    torch.manual_seed(0)
    plain = ConvModule(16, groups=4).eval()
    shuffled = ConvModule(16, groups=4, shuffle=True).eval()
    shuffled.load_state_dict(plain.state_dict())
    x = torch.randn(1, 16, 8, 8)
    assert not torch.allclose(plain(x), shuffled(x))


def test_channel_shuffle_permutation() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups of 3: [0 1 2 | 3 4 5] -> interleaved [0 3 1 4 2 5]
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert ChannelShuffle(3)(x).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_layer_names_and_bad_values() -> None:
    assert [parse_layer(x) for x in ("D", "DG2", "dg4", "DG8")] == [1, 2, 4, 8]
    for bad in ("G2", "DG1", "DGx", ""):
        with pytest.raises(ValueError, match="layer must be"):
            parse_layer(bad)
    with pytest.raises(ValueError, match="groups=3 does not divide 16"):
        ConvModule(16, groups=3)
    with pytest.raises(ValueError, match="decoder must be one of"):
        create_model("essnet", num_classes=3, decoder="fancy")


@pytest.mark.parametrize("decoder", ["cm", "ups", "trans4x", "trans8x", "nodec"])
def test_decoder_variants_and_ppm(decoder: str) -> None:
    model = create_model("essnet", num_classes=4, decoder=decoder).eval()
    x = torch.randn(1, 3, 37, 53)
    assert model(x).shape == (1, 4, 37, 53)
    assert _p("essnet", decoder=decoder) <= _p("essnet_b")  # all lighter than ERFNet's decoder
    ppm = create_model("essnet", num_classes=4, decoder=decoder, ppm=True).eval()
    assert ppm(x).shape == (1, 4, 37, 53)


def test_grouped_pointwise_convs_are_encoder_only() -> None:
    model = create_model("essnet", num_classes=5, layer="DG4", shuffle=True)
    enc = [m for m in model.encoder if isinstance(m, ConvModule)]
    dec = [m for m in model.decoder if isinstance(m, ConvModule)]
    assert all(m.pw1.groups == 4 and m.pw2.groups == 4 for m in enc)
    assert all(m.pw1.groups == 1 for m in dec)
    assert all(isinstance(m.shuffle, ChannelShuffle) for m in enc)


# Thesis Table 3.5, GFLOPs at 512x1024 in its convention (conv MACs + 2 x transposed).
THESIS_GFLOPS = [
    ("erfnet", {}, 27.705),
    ("essnet_b", {"layer": "D"}, 10.597),
    ("essnet", {"layer": "D"}, 5.773),
    ("essnet", {"layer": "DG2"}, 4.029),
    ("essnet", {"layer": "DG4"}, 3.156),
]


@pytest.mark.parametrize(("name", "kwargs", "gflops"), THESIS_GFLOPS)
def test_thesis_gflops_convention(name: str, kwargs: dict, gflops: float) -> None:
    from edgeseg.measure.counts import thesis_flops

    with torch.device("meta"):
        model = create_model(name, num_classes=20, **kwargs).eval()
        x = torch.empty(1, 3, 512, 1024)
    got = thesis_flops(model, x) / 1e9
    assert got == pytest.approx(gflops, rel=0.01)
