"""Registry-parametrized contract tests: every registered model, same checks."""

from __future__ import annotations

import pytest
import torch

from edgeseg.measure.counts import param_count
from edgeseg.models import create_model, list_models
from tests.models.test_encoders import ENCODER_PARAMS

K = 11

#: Trainable parameters at K=11 (default kwargs), pinned so an architecture change is seen.
#: Conv-weight counts from the papers are pinned in each family's own test file.
PARAMS = {
    "bisenetv2": 3_358_627 - 1025 * 8,  # the reference code's 3,358,627 at K=19
    "cgnet": 496_306 - 256 * 8,  # the reference code's 496,306 at K=19: see test_context.py
    "dabnet": 756_643 - 259 * 8,  # the reference code's 756,643 at K=19
    "ddrnet23_slim": 5_695_987 - 65 * 8,  # the authors' code's 5,695,987 at K=19
    "edgesegnet": 1_417_419,  # a documented reading: see test_light_variants.py
    "erfnet": 2_064_256 - 65 * 20 + 65 * 11,  # 2,064,256 at K=20: see test_erfnet.py
    "essnet": 421_056 - 65 * 9,  # K=20 figures in test_essnet.py; the head is 65K
    "essnet_a": 1_267_328 - 65 * 9,
    "essnet_b": 578_304 - 65 * 9,
    "essnet_ppm": 446_016 - 65 * 9,
    "fastscnn": 1_138_051 - 129 * 8,  # the reference code's 1,138,051 at K=19
    "fcn_resnet50": 23_534_733 - 2049 * 2,  # 23,534,733 at K=13: see test_fcn.py
    "l3unet": 279_084 + (64 * 16 + 16) * (11 - 4),  # 279,084 at K=4; the head is 1040K
    "lraspp_mobilenetv3_large": 3_221_538 - 170 * 10,  # torchvision's count at K=21
    "lraspp_mobilenetv3_small": 1_077_954 - 154 * 10,
    "segfast": 626_052 + 65 * 11,
    "segfast_basic": 2_850_528 + 65 * 11,
    "squeeze_encdec": 2_907_979,
    "squeeze_unet": 2_630_091,
    "squeeze_unet_dws": 946_118,  # 930,683 conv weights: see test_squeeze_unet.py
    "unet": 31_037_323,
    "wspdnet": 716_288 - 65 * 9,  # 716,288 at K=20: see test_light_variants.py
    # Encoder-decoders: the encoder is the weights package's ImageNet network without its
    # head (ENCODER_PARAMS, pinned in test_encoders.py); the decoders' own counts follow.
    "fpn_efficientnet_lite0": ENCODER_PARAMS["efficientnet_lite0"] + 381_387,
    "fpn_efficientnet_lite1": ENCODER_PARAMS["efficientnet_lite1"] + 381_387,
    "fpn_efficientnet_lite2": ENCODER_PARAMS["efficientnet_lite2"] + 385_995,
    "lraspp_efficientnet_lite0": ENCODER_PARAMS["efficientnet_lite0"] + 84_046,
    "lraspp_efficientnet_lite1": ENCODER_PARAMS["efficientnet_lite1"] + 84_046,
    "lraspp_efficientnet_lite2": ENCODER_PARAMS["efficientnet_lite2"] + 92_326,
    "ppliteseg_efficientnet_lite0": ENCODER_PARAMS["efficientnet_lite0"] + 1_156_203,
    "ppliteseg_efficientnet_lite1": ENCODER_PARAMS["efficientnet_lite1"] + 1_156_203,
    "ppliteseg_efficientnet_lite2": ENCODER_PARAMS["efficientnet_lite2"] + 1_221_483,
}

MODELS = list_models()
#: The export-path checks (trace, torch.export, ONNX, OpenVINO int8: the slow tier's
#: heaviest) run on every architecture once: EfficientNet-Lite1 and -Lite2 differ from
#: Lite0 only by the width and depth multipliers of the same block rows (same ops, same
#: decoders), so the Lite0 encoder-decoders stand for them; the fast contract tests above
#: and below still take every registered name.
EXPORT_MODELS = [m for m in MODELS if not m.endswith(("efficientnet_lite1", "efficientnet_lite2"))]


def test_every_model_has_a_pinned_count() -> None:
    assert sorted(PARAMS) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_param_count_pinned(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=K)
    assert param_count(model) == PARAMS[name]


@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.slow
def test_output_shape_at_360x480(name: str) -> None:
    model = create_model(name, num_classes=K).eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 3, 360, 480))
    assert y.shape == (1, K, 360, 480)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(97, 131), (33, 17)])
def test_odd_sizes_train_and_eval(name: str, size: tuple[int, int]) -> None:
    model = create_model(name, num_classes=K)
    x = torch.randn(2, 3, *size)
    model.train()
    y = model(x)
    assert y.shape == (2, K, *size)
    assert torch.isfinite(y).all()
    model.eval()
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, K, *size)
    assert torch.isfinite(y).all()


#: Parameters whose gradient is exactly zero by construction, as in the reference code:
#: BiSeNet V2's context embedding normalises the pooled (B, C, 1, 1) vector and feeds it
#: to a conv followed by BatchNorm, which cancels any constant shift (that BN's bias).
#: DDRNet's last context bottleneck feeds only DAPPM, whose every path starts with a
#: BatchNorm: the biases of the bottleneck's two final BNs cancel the same way.
NO_GRADIENT = {
    "bisenetv2": {"context.bn.bias"},
    "ddrnet23_slim": {"low_last.body.2.1.bias", "low_last.shortcut.1.bias"},
}


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = create_model(name, num_classes=K).train()
    for m in model.modules():  # stochastic depth may drop a block for the whole batch
        if isinstance(getattr(m, "drop_path", None), float):
            m.drop_path = 0.0
    x = torch.randn(2, 3, 45, 61)
    target = torch.randint(0, K, (2, 45, 61))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [
        n
        for n, p in model.named_parameters()
        if (p.grad is None or not p.grad.abs().sum() > 0) and n not in NO_GRADIENT.get(name, ())
    ]
    assert not missing, f"no gradient reaches {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.slow
def test_trace_generalises_across_sizes(name: str) -> None:
    model = create_model(name, num_classes=K).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 97, 131), check_trace=False)
        x = torch.randn(1, 3, 64, 80)
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.slow
def test_torch_export_static(name: str) -> None:
    model = create_model(name, num_classes=K).eval()
    x = torch.randn(1, 3, 50, 70)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_in_channels(name: str) -> None:
    model = create_model(name, num_classes=2, in_channels=1).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 40, 40)).shape == (1, 2, 40, 40)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name: str) -> None:
    a = create_model(name, num_classes=K).eval()
    b = create_model(name, num_classes=K).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 48)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.slow
def test_onnx_export_matches_pytorch(name: str, tmp_path) -> None:
    from edgeseg.deploy.export import export_onnx, onnx_session, parity

    model = create_model(name, num_classes=K).eval()
    path = tmp_path / f"{name}.onnx"
    assert export_onnx(model, path, input_size=(64, 96)) == "dynamo"
    session = onnx_session(path, threads=2)
    # Sizes other than the export's, one of them odd: height and width are dynamic.
    for size in [(97, 131), (48, 64)]:
        max_diff, agreement = parity(model, session, torch.randn(2, 3, *size))
        assert max_diff < 1e-3
        assert agreement > 0.999


_OPENVINO_STATIC = """
import sys, numpy as np, openvino as ov
core = ov.Core()
m = core.read_model(sys.argv[1])
m.reshape({m.inputs[0]: [1, 3, 192, 256]})
out = core.compile_model(m, "CPU")({0: np.zeros((1, 3, 192, 256), np.float32)})
assert next(iter(out.values())).shape == (1, 11, 192, 256)
"""


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.slow
def test_int8_file_compiles_under_openvino_at_a_static_size(name: str, tmp_path) -> None:
    # openvino-int8 compiles the int8 file for the input's static shape (here large enough
    # for Fast-SCNN's 6-pixel pooling window at 1/32). A graph OpenVINO's CPU plugin cannot
    # take crashes the process (DDRNet's did), so the compile runs in a child process.
    import subprocess
    import sys

    pytest.importorskip("openvino")
    from edgeseg.deploy.export import export_onnx
    from edgeseg.deploy.quantize import int8_graph, quantize_onnx

    model, _ = int8_graph(create_model(name, num_classes=K))
    export_onnx(model, tmp_path / "fp32.onnx", input_size=(192, 256))
    images = [torch.randn(3, 192, 256) for _ in range(2)]
    quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", images)
    args = [sys.executable, "-c", _OPENVINO_STATIC, str(tmp_path / "int8.onnx")]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
