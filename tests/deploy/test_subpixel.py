"""Transposed convs rewritten as conv + pixel shuffle give the same outputs (int8 path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.deploy import quantize as Q
from edgeseg.deploy.subpixel import (
    PhaseConvTranspose2d,
    SubPixelConvTranspose2d,
    subpixel_deconvs,
)
from edgeseg.models import create_model


@pytest.mark.parametrize(
    ("k", "s", "p", "op", "groups"),
    [
        (3, 2, 1, 1, 1),  # ERFNet / L3U-Net upsampler
        (2, 2, 0, 0, 1),  # U-Net up-conv, ERFNet head
        (2, 2, 0, 0, 4),  # Squeeze U-Net depthwise up-conv (groups = channels)
        (1, 2, 0, 1, 1),  # ESSNet Conv-module upsampler (odd phases are bias only)
        (4, 4, 0, 0, 1),  # ESSNet x4 decoder
        (8, 8, 0, 0, 1),  # ESSNet t8 decoder
        (4, 2, 1, 0, 2),  # DCGAN-style, grouped
        (3, 2, 0, 0, 1),  # output length 2L + 1: needs an extra input position
        (5, 3, 2, 2, 1),
        (2, 1, 0, 0, 1),  # Squeeze U-Net decoder fire expand 2x2 (stride 1, output L + 1)
        (1, 1, 0, 0, 1),
    ],
)
def test_equals_conv_transpose(k: int, s: int, p: int, op: int, groups: int) -> None:
    torch.manual_seed(0)
    t = nn.ConvTranspose2d(4, 8, k, s, p, output_padding=op, groups=groups, bias=True)
    sub = SubPixelConvTranspose2d.from_conv_transpose(t)
    for h, w in ((5, 7), (6, 6), (1, 3)):
        x = torch.randn(2, 4, h, w)
        ref = t(x)
        out = sub(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_grouped_layers_only_on_request() -> None:
    m = nn.Sequential(
        nn.ConvTranspose2d(16, 16, 2, 2, groups=4),
        nn.ConvTranspose2d(16, 16, 2, 2),
        nn.ConvTranspose2d(16, 16, 3, 2, 1, groups=16),  # depthwise: always rewritten
    )
    out, n = subpixel_deconvs(m)
    assert n == 2 and type(out[0]) is nn.ConvTranspose2d
    assert type(out[2]) is PhaseConvTranspose2d
    assert subpixel_deconvs(m, grouped=True)[1] == 3


@pytest.mark.parametrize(
    ("k", "s", "p", "op"),
    [
        (3, 2, 1, 0),  # SegFast's upsampler (output 2L - 1)
        (3, 2, 1, 1),
        (2, 2, 0, 0),  # Squeeze U-Net DWS up-conv
        (2, 1, 0, 0),  # Squeeze U-Net DWS decoder expand (stride 1: one flipped conv)
        (4, 2, 1, 0),
        (5, 3, 2, 2),
        (1, 2, 0, 1),  # odd phases have no taps: bias only
    ],
)
def test_depthwise_phase_convs_equal_conv_transpose(k: int, s: int, p: int, op: int) -> None:
    torch.manual_seed(0)
    t = nn.ConvTranspose2d(6, 6, k, s, p, output_padding=op, groups=6, bias=True)
    dw = PhaseConvTranspose2d.from_conv_transpose(t)
    assert len(dw.phases) == s * s
    assert all(c.groups == c.in_channels == c.out_channels == 6 for c in dw.phases)
    with torch.no_grad():
        for h, w in ((5, 7), (6, 6), (1, 3)):
            x = torch.randn(2, 6, h, w)
            torch.testing.assert_close(dw(x), t(x), atol=1e-5, rtol=1e-5)


def test_depthwise_phases_read_only_their_taps() -> None:
    # k=3, s=2, p=1: phase (0, 0) reads one input pixel, (0, 1) and (1, 0) two, (1, 1)
    # four: 9 weights per channel, the transposed conv's own work (a single grouped conv
    # over the 2x2 window would do 16).
    t = nn.ConvTranspose2d(8, 8, 3, 2, 1, groups=8)
    dw = PhaseConvTranspose2d.from_conv_transpose(t)
    assert [tuple(c.kernel_size) for c in dw.phases] == [(1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.parametrize(
    ("k", "s", "p", "op", "groups"),
    [
        (3, 2, 1, 1, 1),  # ERFNet's upsamplers, SegFast-Basic's (output 2L - 1 with op=0)
        (3, 2, 1, 0, 1),
        (4, 2, 1, 0, 2),
        (5, 3, 2, 2, 1),
        (1, 2, 0, 1, 1),
    ],
)
def test_dense_phase_convs_equal_conv_transpose(
    k: int, s: int, p: int, op: int, groups: int
) -> None:
    torch.manual_seed(0)
    t = nn.ConvTranspose2d(4, 6, k, s, p, output_padding=op, groups=groups, bias=True)
    ph = PhaseConvTranspose2d.from_conv_transpose(t)
    assert all(c.in_channels == 4 and c.out_channels == 6 for c in ph.phases)
    with torch.no_grad():
        for h, w in ((5, 7), (6, 6), (1, 3)):
            x = torch.randn(2, 4, h, w)
            torch.testing.assert_close(ph(x), t(x), atol=1e-5, rtol=1e-5)


def test_dense_layers_split_into_phases_only_where_one_conv_would_hold_zero_taps() -> None:
    # k=3, s=2 as one 2x2 conv over all phases: 16 taps per input channel, 7 of them zero.
    # Split: the 9 the transposed conv has (SegFast-Basic int8 at 360x480: 68 -> 58 ms).
    # k=s (U-Net's 2x2 up-convs) has no zero tap: one conv, no concat.
    m = nn.Sequential(nn.ConvTranspose2d(16, 16, 3, 2, 1, 1), nn.ConvTranspose2d(16, 16, 2, 2))
    out, n = subpixel_deconvs(m)
    assert n == 2
    assert type(out[0]) is PhaseConvTranspose2d and type(out[1]) is SubPixelConvTranspose2d
    assert [tuple(c.kernel_size) for c in out[0].phases] == [(1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.slow
def test_segfast_upsamplers_run_in_int8(tmp_path: Path) -> None:
    import onnx

    from edgeseg.deploy.quantize import quantize_model_onnx

    torch.manual_seed(0)
    model = create_model("segfast", num_classes=3, width=16).eval()
    fast, n = subpixel_deconvs(model)
    assert n == 3
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
    report = quantize_model_onnx(model, tmp_path / "q.onnx", [torch.randn(3, 48, 64)], (48, 64))
    assert report.fp32_layers == [] and report.subpixel == 3
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "ConvTranspose" not in ops and "AveragePool" not in ops


def test_kernels_smaller_than_the_stride_only_on_request() -> None:
    m = nn.Sequential(
        nn.ConvTranspose2d(16, 16, 1, 2, output_padding=1), nn.ConvTranspose2d(16, 16, 2, 2)
    )
    assert subpixel_deconvs(m)[1] == 1
    assert subpixel_deconvs(m, undersized=True)[1] == 2


def test_narrow_layers_only_on_request() -> None:
    m = nn.Sequential(nn.ConvTranspose2d(16, 11, 2, 2), nn.ConvTranspose2d(11, 16, 2, 2))
    assert subpixel_deconvs(m)[1] == 1
    assert subpixel_deconvs(m, min_channels=1)[1] == 2


def test_cropped_output_followed_by_inplace_relu_exports_without_scatter(tmp_path: Path) -> None:
    # An in-place op on a cropped view exports as ScatterND + Transposes (4x slower int8).
    import onnx

    from edgeseg.deploy.export import export_onnx

    t = nn.ConvTranspose2d(3, 4, 3, 2, 1)  # output_padding 0: one row and column cropped

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = SubPixelConvTranspose2d.from_conv_transpose(t)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu_(self.up(x))

    m = Up()
    export_onnx(m.eval(), tmp_path / "m.onnx", input_size=(9, 11))
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert "ScatterND" not in ops
    assert ops.count("Transpose") == 3, ops  # unfold's own: NHWC, the phase swap, NCHW


def test_relu_after_the_layer_moves_before_the_shuffle() -> None:
    # ReLU commutes with the shuffle and crop; inside, it fuses into the int8 conv.
    torch.manual_seed(0)
    block = nn.Sequential(
        nn.ConvTranspose2d(16, 16, 3, 2, 1),
        nn.Identity(),
        nn.ReLU(inplace=True),
        nn.ZeroPad2d((0, 1, 0, 1)),
    ).eval()
    m, n = subpixel_deconvs(block)
    assert n == 1 and isinstance(m[0].act, nn.ReLU) and isinstance(m[2], nn.Identity)
    x = torch.randn(2, 16, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(m(x), block(x), rtol=1e-5, atol=1e-5)


def test_zero_pads_run_on_uint8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ONNX Runtime keeps dequantize -> fp32 Pad -> quantize around a pad; the int8 file
    # pads the uint8 tensor with its zero point instead (exact), and no Shape makes a
    # full-size dequantized copy just to read its size.
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    class PadThenConcat(nn.Module):  # a pad before a conv would be fused into it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(19, 4, 1)
            self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # as SegFast's decoder

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]  # dynamic sizes: Shape nodes in the export
            y = self.pad(torch.relu(self.conv(x[..., : h - 1, : w - 1])))
            return self.head(torch.cat([y, x], 1))

    torch.manual_seed(0)
    block = PadThenConcat().eval()
    calib = [torch.randn(3, 12, 12) for _ in range(4)]
    Q.quantize_model_onnx(block, tmp_path / "q.onnx", calib, (12, 12))
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert pads
    for n in pads:
        assert producer.get(n.input[0]) != "DequantizeLinear"
        assert inits[n.input[2]].dtype == np.uint8  # the zero point
    assert all(
        producer.get(n.input[0]) != "DequantizeLinear" for n in graph.node if n.op_type == "Shape"
    )
    used = {i for n in graph.node for i in n.input}
    assert all(t.name in used for t in graph.initializer)
    # exact: the same logits as the file quantized without the rewrites, at another size
    from edgeseg.deploy import onnx_passes as P

    monkeypatch.setattr(Q, "POST_INT8_PASSES", (P.concat_inputs_share_scale,))
    Q.quantize_model_onnx(block, tmp_path / "ref.onnx", calib, (12, 12))
    x = torch.randn(1, 3, 15, 13).numpy()
    out = []
    for f in ("q.onnx", "ref.onnx"):
        sess = ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"])
        out.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    assert out[0].shape == (1, 4, 15, 13)
    np.testing.assert_array_equal(out[0], out[1])


def test_only_plain_zero_pads_with_shared_parameters_are_rewritten() -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.deploy.onnx_passes import pads_in_uint8

    def graph(mode: str, out_scale: float) -> onnx.ModelProto:
        inits = [
            numpy_helper.from_array(np.array(0.5, np.float32), "s"),
            numpy_helper.from_array(np.array(out_scale, np.float32), "s2"),
            numpy_helper.from_array(np.array(3, np.uint8), "zp"),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
            helper.make_node("Pad", ["xd", "pads"], ["p"], mode=mode),
            helper.make_node("QuantizeLinear", ["p", "s2", "zp"], ["pq"]),
            helper.make_node("DequantizeLinear", ["pq", "s2", "zp"], ["y"]),
        ]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
        return helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits))

    m = graph("constant", 0.5)
    assert pads_in_uint8(m) == 1
    ops = [n.op_type for n in m.graph.node]
    assert ops == ["QuantizeLinear", "Pad", "DequantizeLinear"]
    for mode, scale in (("reflect", 0.5), ("constant", 0.25)):  # other values, other scale
        m = graph(mode, scale)
        assert pads_in_uint8(m) == 0 and len(m.graph.node) == 5


def test_ineligible_layers_are_kept() -> None:
    m = nn.Sequential(
        nn.ConvTranspose2d(4, 4, 3, 2, 1, dilation=2), nn.ConvTranspose2d(4, 4, 3, (1, 2))
    )
    out, n = subpixel_deconvs(m)
    assert n == 0 and all(type(c) is nn.ConvTranspose2d for c in out)


@pytest.mark.parametrize("name", ["erfnet", "squeeze_unet", "l3unet", "essnet"])
def test_models_keep_their_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    fast, n = subpixel_deconvs(model, undersized=True, min_channels=1)
    assert n > 0
    assert not any(type(m) is nn.ConvTranspose2d for m in fast.modules())
    assert any(type(m) is nn.ConvTranspose2d for m in model.modules())  # original untouched
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)


def test_weights_keep_7_bits_where_u8s8_saturates() -> None:
    # ORT's u8s8 kernels without VNNI add products pairwise in int16 and saturate.
    from edgeseg.deploy.quantize import needs_reduced_range

    assert needs_reduced_range("AVX2") and needs_reduced_range("AVX-512")
    for isa in ("AVX-512 VNNI", "AVX2 + AVX-VNNI", "AMX-INT8", "NEON dot-product", ""):
        assert not needs_reduced_range(isa)
