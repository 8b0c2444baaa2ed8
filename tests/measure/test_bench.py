"""CPU backends, int8 quantization and the bench command (tiny models, synthetic data)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.cli import main
from edgeseg.deploy.backends import BACKENDS, make_runner
from edgeseg.deploy.export import export_onnx
from edgeseg.deploy.pt2e import quantize_pt2e
from edgeseg.deploy.quantize import calibration_images, quantize_onnx
from edgeseg.deploy.segmenter import Segmenter
from edgeseg.engine.checkpoint import load_model
from edgeseg.errors import DataError, EdgesegError
from edgeseg.measure.bench import bench
from tests.cli_checks import assert_one_line_exit_2

pytestmark = pytest.mark.filterwarnings("ignore")
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
HAVE_NNCF = HAVE_OPENVINO and importlib.util.find_spec("nncf") is not None


@pytest.mark.slow
def test_ort_int8_quantizes_and_reports_fp32_layers(tiny_run, tmp_path: Path) -> None:
    data, run = tiny_run
    model, ckpt = load_model(run)
    export_onnx(model, tmp_path / "fp32.onnx", input_size=(40, 56))
    calib = calibration_images(ckpt, str(data), "train", 4, (40, 56))
    assert len(calib) == 4 and calib[0].shape == (3, 40, 56)
    report = quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib)
    assert report.qdq_nodes > 0
    assert report.by_op["Conv"]["int8"] > 0
    # ONNX Runtime has no int8 ConvTranspose: those layers stay fp32 and are named.
    assert any(layer.startswith("ConvTranspose") for layer in report.fp32_layers)
    run_fp32 = make_runner("ort", onnx_path=tmp_path / "fp32.onnx")
    run_int8 = make_runner("ort", onnx_path=tmp_path / "int8.onnx")
    x = calib[0][None]
    a, b = run_fp32(x).argmax(1), run_int8(x).argmax(1)
    assert (a == b).float().mean() > 0.8
    assert (tmp_path / "int8.onnx").stat().st_size < (tmp_path / "fp32.onnx").stat().st_size


@pytest.mark.slow
def test_pt2e_int8_quantizes(tiny_run) -> None:
    data, run = tiny_run
    model, ckpt = load_model(run)
    calib = calibration_images(ckpt, str(data), "train", 2, (40, 56))
    compiled, report = quantize_pt2e(model, calib, calib[0][None])
    assert report.qdq_nodes > 0 and report.quantized_layers > 0
    assert report.by_op["ConvTranspose"].get("fp32", 0) > 0
    with torch.no_grad():
        y = compiled(calib[1][None])
        ref = model(calib[1][None])
    assert y.shape == ref.shape
    assert (y.argmax(1) == ref.argmax(1)).float().mean() > 0.8


def test_calibration_data_missing(tiny_run) -> None:
    _, run = tiny_run
    _, ckpt = load_model(run)
    with pytest.raises(DataError, match="calibration data missing"):
        calibration_images(ckpt, None, "train", 4, (40, 56))


@pytest.mark.parametrize("backend", ["eager", "channels_last", "ort", "openvino"])
def test_runners_agree_with_eager(backend: str) -> None:
    from edgeseg.models import create_model

    if backend == "openvino" and not HAVE_OPENVINO:
        pytest.skip("needs the openvino package (extra)")
    model = create_model("l3unet", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 96)
    run = make_runner(backend, model=model, example=x)
    with torch.inference_mode():
        torch.testing.assert_close(run(x), model(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backend", ["bf16", "openvino-bf16"])
def test_bf16_runners_stay_close_to_eager(backend: str) -> None:
    """bf16 keeps 8 bits of mantissa: the logits move a little, the float32 dtype and the
    shape do not; the runner says which precision its engine really used."""
    from edgeseg.deploy.backends import native_bf16, runner_precision
    from edgeseg.models import create_model

    if backend.startswith("openvino") and not HAVE_OPENVINO:
        pytest.skip("needs the openvino package (extra)")
    torch.manual_seed(0)
    model = create_model("segfast", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 96)
    run = make_runner(backend, model=model, example=x)
    with torch.inference_mode():
        y, ref = run(x), model(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert (y.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    got = runner_precision(backend, run)
    if backend == "bf16" or native_bf16():
        assert got == "bf16"
    else:  # where the CPU has no bf16 units OpenVINO may decline it: it then says fp32
        assert got in ("bf16", "fp32")


def test_openvino_fp32_is_fp32_whatever_the_cpu() -> None:
    """Left to itself OpenVINO's CPU plugin runs bf16 on a bf16 CPU; ``openvino`` asks
    for f32 and the compiled model is read back to prove it."""
    from edgeseg.deploy.backends import runner_precision
    from edgeseg.models import create_model

    if not HAVE_OPENVINO:
        pytest.skip("needs the openvino package (extra)")
    x = torch.randn(1, 3, 32, 48)
    run = make_runner("openvino", model=create_model("l3unet", num_classes=3).eval(), example=x)
    assert runner_precision("openvino", run) == "fp32"
    assert runner_precision("openvino-int8", run) == "int8+fp32"


def test_bf16_backends_are_default_only_on_a_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.measure import bench as bench_mod

    monkeypatch.setattr(bench_mod, "native_bf16", lambda: False)
    assert not any("bf16" in b for b in bench_mod._backends_for("l3unet", None, None))
    monkeypatch.setattr(bench_mod, "native_bf16", lambda: True)
    with_bf16 = bench_mod._backends_for("l3unet", None, None)
    assert "bf16" in with_bf16 and "compile-bf16" in with_bf16


def test_unknown_backend() -> None:
    with pytest.raises(EdgesegError, match="unknown backend 'tensorrt'"):
        make_runner("tensorrt")


@pytest.mark.slow
def test_bench_model_name_fresh_processes(tmp_path: Path) -> None:
    res = bench(
        "l3unet",
        size=(32, 48),
        threads=1,
        backends=["eager", "channels_last", "ort"],
        iterations=2,
        warmup=1,
        repeats=2,
        workdir=tmp_path / "keep",
    )
    assert set(res["backends"]) == {"eager", "channels_last", "ort"}
    # the kept folder holds the artefacts only, no worker job files
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["fp32.onnx"]
    for row in res["backends"].values():
        assert row["runs"] == 4 and isinstance(row["latency_ms"]["median"], float)
        assert row["peak_rss_bytes"] > 0
        assert row["precision"] == "fp32" and "gops" in row
    assert res["ops"] > 0 and set(res["peak"]["gops"]) <= {"fp32", "bf16", "int8"}
    assert res["backends"]["eager"]["speedup"] == pytest.approx(1.0)
    assert res["backends"]["ort"]["zip_bytes"] < res["backends"]["ort"]["size_bytes"]
    assert res["best"] in BACKENDS


@pytest.mark.slow
def test_bench_checkpoint_accuracy_and_int8(tiny_run, tmp_path: Path, capsys) -> None:
    data, run = tiny_run
    argv = [
        "bench",
        str(run),
        "--size",
        "40x56",
        "--threads",
        "1",
        "--backends",
        "eager,ort,ort-int8",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--data",
        str(data),
        "--calib-images",
        "4",
        "--json",
    ]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    rows = res["backends"]
    assert rows["eager"]["pixel_agreement"] == 1.0
    assert rows["ort"]["pixel_agreement"] > 0.999
    assert abs(rows["ort"]["miou"] - rows["eager"]["miou"]) < 1e-3
    assert 0 <= rows["ort-int8"]["miou"] <= 1
    assert rows["ort-int8"]["size_bytes"] < rows["ort"]["size_bytes"]
    assert res["quantization"]["ort-int8"]["quantized_layers"] > 0
    assert res["best"] in rows


@pytest.mark.slow
def test_segmenter_backends_and_onnx_file(tiny_run, tmp_path: Path) -> None:
    data, run = tiny_run
    img = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    ref = Segmenter(run, backend="eager")(img)
    assert (Segmenter(run, backend="ort")(img) == ref).mean() > 0.999
    int8 = Segmenter(run, backend="ort-int8", calibration=str(data))(img)
    assert int8.shape == ref.shape
    export_onnx(load_model(run)[0], tmp_path / "m.onnx", metadata=None)
    from edgeseg.workflows.export import export_checkpoint

    export_checkpoint(run, tmp_path / "c.onnx")
    seg = Segmenter(tmp_path / "c.onnx", backend="ort")
    assert seg.classes == ("a", "b", "c")
    assert (seg(img) == ref).mean() > 0.999


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_NNCF, reason="needs the nncf and openvino packages (extras)")
@pytest.mark.parametrize("backend", ["openvino", "openvino-int8", "nncf-int8"])
def test_segmenter_on_openvino_backends(tiny_run, backend: str) -> None:
    data, run = tiny_run
    img = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    ref = Segmenter(run, backend="eager")(img)
    labels = Segmenter(run, backend=backend, calibration=str(data))(img)
    assert labels.shape == ref.shape and labels.dtype == np.uint8
    if backend == "openvino":  # fp32: the same predictions as PyTorch
        assert (labels == ref).mean() > 0.99


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "l3unet", "--backends", "eager,tensorrt"], "unknown backend 'tensorrt'"),
        (["bench", "no_such_net"], "unknown model"),
        (["bench", "BAD.onnx"], "ONNX file not found"),
        (["bench", "l3unet", "--mixed-precision", "--backends", "eager"], "needs --data"),
    ],
)
def test_bench_bad_input(argv: list[str], needle: str, capsys) -> None:
    assert_one_line_exit_2(argv, needle, capsys)


@pytest.mark.slow
def test_bench_checkpoint_errors(tiny_run, tmp_path: Path, capsys) -> None:
    _, run = tiny_run
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x00garbage")
    cases = [
        (["bench", str(run), "--classes", "5", "--backends", "eager"], "has 3 classes"),
        (["bench", str(run), "--backends", "ort-int8"], "calibration data missing"),
        (["bench", str(bad), "--backends", "ort"], "corrupt.onnx"),
        (["bench", str(bad), "--backends", "eager"], "corrupt.onnx"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            sys.exit(main(argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_int8_from_the_network_runs_transposed_convs_in_int8(tiny_run, tmp_path: Path) -> None:
    from edgeseg.deploy.quantize import quantize_model_onnx

    data, run = tiny_run
    model, ckpt = load_model(run)
    calib = calibration_images(ckpt, str(data), "train", 4, (40, 56))
    report = quantize_model_onnx(model, tmp_path / "int8.onnx", calib, (40, 56))
    assert report.subpixel > 0
    # Every transposed conv the rewrite took runs in int8; only the ones it leaves (1x1
    # stride-2 and narrow ones, slower as conv + shuffle) stay fp32.
    total = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    kept = [layer for layer in report.fp32_layers if layer.startswith("ConvTranspose")]
    assert len(kept) == total - report.subpixel
    run_fp32 = make_runner("eager", model=model)
    run_int8 = make_runner("ort", onnx_path=tmp_path / "int8.onnx")
    for x in calib[:2]:
        a, b = run_fp32(x[None]).argmax(1), run_int8(x[None]).argmax(1)
        assert (a == b).float().mean() > 0.8


@pytest.mark.slow
def test_int8_moves_uint8_through_pixel_shuffles(tmp_path: Path) -> None:
    # Sub-pixel upsampling and L3U-Net's unfold are channels-last moves: ONNX Runtime
    # runs them on the uint8 output of its NHWC int8 convs, with no DepthToSpace and no
    # layout transposes around them.
    import onnx
    import onnxruntime as ort

    from edgeseg.deploy.quantize import quantize_model_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("l3unet", num_classes=3).eval()
    calib = [torch.randn(3, 64, 64) for _ in range(2)]
    quantize_model_onnx(model, tmp_path / "int8.onnx", calib, (64, 64))
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "int8.onnx"), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "DepthToSpace"]
    producer = {o: n for n in graph.node for o in n.output}
    swaps = [
        n
        for n in graph.node
        if n.op_type == "Transpose" and len(onnx.helper.get_attribute_value(n.attribute[0])) == 5
    ]
    assert len(swaps) == 3  # two upsamplers, the final unfold
    for n in swaps:
        src = producer[n.input[0]]
        while src.op_type == "Reshape":
            src = producer[src.input[0]]
        # uint8, straight from the conv (the upsamplers': from the concat of their phases)
        assert src.op_type in ("QLinearConv", "QLinearConcat"), src.op_type
    run_int8 = make_runner("ort", onnx_path=tmp_path / "int8.onnx")
    with torch.no_grad():
        ref = model(calib[0][None])
    assert (run_int8(calib[0][None]).argmax(1) == ref.argmax(1)).float().mean() > 0.8


def test_fastest_within_budget_skips_backends_that_lose_accuracy() -> None:
    from edgeseg.measure.bench import fastest_within_budget

    def row(ms: float, miou: float | None = None) -> dict:
        return {"latency_ms": {"median": ms}, **({"miou": miou} if miou is not None else {})}

    scored = {"eager": row(100, 0.60), "ort": row(50, 0.60), "ort-int8": row(30, 0.585)}
    assert fastest_within_budget(scored) == "ort"  # int8 lost 1.5 points
    assert fastest_within_budget(scored, budget=0.02) == "ort-int8"
    unscored = {"eager": row(100), "ort": row(50), "ort-int8": row(30)}
    assert fastest_within_budget(unscored) == "ort-int8"


@pytest.mark.slow
def test_bench_onnx_file_with_its_defaults_scores_each_backend(
    tiny_run, tmp_path: Path, capsys
) -> None:
    # An ONNX file runs on the backends that can run it, and its metadata (classes,
    # normalisation) is enough to calibrate int8 and to score both on --data.
    from edgeseg.deploy.backends import native_bf16
    from edgeseg.workflows.export import export_checkpoint

    data, run = tiny_run
    export_checkpoint(run, tmp_path / "m.onnx")
    argv = [
        "bench",
        str(tmp_path / "m.onnx"),
        "--data",
        str(data),
        "--iterations",
        "1",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--calib-images",
        "4",
        "--size",
        "40x56",
        "--json",
    ]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    ov = {"openvino", "openvino-int8"} if HAVE_OPENVINO else set()
    ov |= {"nncf-int8"} if HAVE_NNCF else set()
    # bf16 joins the defaults only on a CPU with bf16 arithmetic.
    ov |= {"openvino-bf16"} if HAVE_OPENVINO and native_bf16() else set()
    assert set(res["backends"]) == {"ort", "ort-int8"} | ov
    assert all(0 <= row["miou"] <= 1 for row in res["backends"].values())
    assert "against ort" in res["best_reason"]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_OPENVINO, reason="needs the openvino package (extra)")
def test_openvino_backends_side_by_side_with_accuracy(tiny_run, tmp_path: Path) -> None:
    data, run = tiny_run
    res = bench(
        str(run),
        size=(40, 56),
        backends=["eager", "ort", "ort-int8", "openvino", "openvino-int8"],
        iterations=1,
        warmup=1,
        repeats=1,
        data=str(data),
        calib_images=4,
    )
    assert set(res["backends"]) == {"eager", "ort", "ort-int8", "openvino", "openvino-int8"}
    for b in ("openvino", "openvino-int8"):
        row = res["backends"][b]
        assert isinstance(row["latency_ms"]["median"], float)
        assert 0 <= row["miou"] <= 1
    # fp32 OpenVINO runs the same file as ORT: the same predictions, nearly every pixel
    assert res["backends"]["openvino"]["pixel_agreement"] > 0.99


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_NNCF, reason="needs the nncf and openvino packages (extras)")
def test_nncf_int8_runs_nncfs_own_file_with_accuracy(tiny_run, tmp_path: Path) -> None:
    data, run = tiny_run
    res = bench(
        str(run),
        size=(40, 56),
        backends=["eager", "openvino-int8", "nncf-int8"],
        iterations=1,
        warmup=1,
        repeats=1,
        data=str(data),
        calib_images=4,
        workdir=tmp_path / "work",
    )
    assert set(res["backends"]) == {"eager", "openvino-int8", "nncf-int8"}
    row = res["backends"]["nncf-int8"]
    assert isinstance(row["latency_ms"]["median"], float)
    assert 0 <= row["miou"] <= 1
    assert res["quantization"]["nncf-int8"]["method"] == "nncf-int8"
    assert res["quantization"]["openvino-int8"]["method"] == "ort-int8"
    # two different int8 files: NNCF's and edgeseg's own QDQ file
    assert (tmp_path / "work" / "int8-nncf.onnx").is_file()
    assert (tmp_path / "work" / "int8.onnx").is_file()
    assert row["size_bytes"] == (tmp_path / "work" / "int8-nncf.onnx").stat().st_size


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_NNCF, reason="needs the nncf and openvino packages (extras)")
def test_nncf_failure_costs_its_backend_only(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.measure.bench as bench_mod

    def fail(*_: object) -> None:
        raise RuntimeError("unsupported pattern\nlong traceback")

    monkeypatch.setattr(bench_mod, "quantize_onnx_nncf", fail)
    data, run = tiny_run
    res = bench(
        str(run),
        size=(40, 56),
        backends=["ort", "nncf-int8"],
        iterations=1,
        warmup=1,
        repeats=1,
        data=str(data),
        calib_images=4,
    )
    assert set(res["backends"]) == {"ort"}
    assert res["errors"]["nncf-int8"] == "NNCF could not quantize this network: unsupported pattern"


def test_nncf_int8_without_nncf_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.deploy.quantize as q
    from edgeseg.deploy.backends import onnx_backend_unavailable

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a)
    )
    assert "nncf is not installed" in q.nncf_unavailable()
    assert "edgeseg[nncf]" in onnx_backend_unavailable("nncf-int8")
    with pytest.raises(EdgesegError, match="nncf is not installed"):
        make_runner("nncf-int8", onnx_path="x.onnx")


@pytest.mark.slow
def test_missing_engine_is_reported_and_the_rest_run(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeseg.measure.bench as bench_mod

    monkeypatch.setattr(
        bench_mod,
        "onnx_backend_unavailable",
        lambda b: (
            "backend openvino needs the openvino package" if b.startswith("openvino") else None
        ),
    )
    _, run = tiny_run
    res = bench(
        str(run), size=(40, 56), backends=["ort", "openvino"], iterations=1, warmup=1, repeats=1
    )
    assert set(res["backends"]) == {"ort"}
    assert "needs the openvino package" in res["errors"]["openvino"]


def test_default_backends_leave_int8_out_without_calibration_data() -> None:
    """``edgeseg bench CKPT`` with no --data runs what it can (no int8: it calibrates on
    images) instead of refusing; int8 asked for by name still needs data."""
    from edgeseg.measure.bench import _backends_for

    without = _backends_for("run/best.pt", None, None)
    assert without and not any(b.endswith("int8") for b in without)
    assert any(b.endswith("int8") for b in _backends_for("run/best.pt", None, "data"))
    assert _backends_for("run/best.pt", ["ort-int8"], None) == ["ort-int8"]


@pytest.mark.slow
def test_bench_mixed_precision_prints_the_sensitivity_and_what_stayed_fp32(
    tiny_run, tmp_path: Path, capsys
) -> None:
    data, run = tiny_run
    backends = "eager,ort-int8" + (",nncf-int8" if HAVE_NNCF else "")
    argv = [
        "bench",
        str(run),
        "--size",
        "40x56",
        "--threads",
        "1",
        "--backends",
        backends,
        "--iterations",
        "1",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--data",
        str(data),
        "--calib-images",
        "4",
        "--mixed-precision",
        "--accuracy-budget",
        "0",
    ]
    assert main([*argv, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    mixed = res["quantization"]["ort-int8"]["mixed"]
    assert mixed["budget"] == 0 and mixed["steps"][0]["kept_fp32"] == []
    kept = res["quantization"]["ort-int8"]["kept_fp32_modules"]
    assert kept == mixed["kept_fp32"]
    if mixed["int8_miou"] < mixed["fp32_miou"]:  # the search ran: a table, parts kept
        assert mixed["sensitivity"]["parts"] and kept
    if HAVE_NNCF:  # NNCF leaves the same modules out
        assert res["quantization"]["nncf-int8"]["kept_fp32_modules"] == kept
    assert main(argv) == 0
    assert "mixed precision: kept in fp32:" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_an_onnx_file_with_external_weights(tiny_run, tmp_path: Path) -> None:
    # Weights in a data file beside the graph (as large exports are saved) travel with it.
    import onnx

    from edgeseg.workflows.export import export_checkpoint

    _, run = tiny_run
    export_checkpoint(run, tmp_path / "one.onnx")
    proto = onnx.load(str(tmp_path / "one.onnx"))
    ext = tmp_path / "ext" / "m.onnx"
    ext.parent.mkdir()
    onnx.save(proto, str(ext), save_as_external_data=True, location="m.data", size_threshold=0)
    assert (ext.parent / "m.data").stat().st_size > ext.stat().st_size
    res = bench(str(ext), size=(40, 56), backends=["ort"], iterations=1, warmup=1, repeats=1)
    assert isinstance(res["backends"]["ort"]["latency_ms"]["median"], float)
    (ext.parent / "m.data").unlink()
    with pytest.raises(EdgesegError, match=r"m\.onnx: its external weights"):
        bench(str(ext), size=(40, 56), backends=["ort"], iterations=1, warmup=1, repeats=1)


def test_bench_result_is_typed_versioned_and_prints_its_table() -> None:
    from edgeseg.measure.bench import BENCH_SCHEMA, BenchResult

    row = {
        "latency_ms": {"median": 10.0, "p90": 12.0},
        "images_per_s": 100.0,
        "peak_rss_bytes": 2e8,
        "miou": 0.5,
        "precision": "fp32",
    }
    old = {  # written before the schema existed
        "source": "l3unet",
        "size": [40, 56],
        "threads": 2,
        "cpu": "some CPU",
        "backends": {"eager": row, "ort": {**row, "latency_ms": {"median": 5.0, "p90": 6.0}}},
        "quantization": {},
        "errors": {"openvino": "not installed"},
        "best": "ort",
        "best_reason": "fastest",
    }
    res = BenchResult.from_dict(old)
    assert res["schema"] == BENCH_SCHEMA and res.best == "ort"
    assert res.latency_ms() == 5.0 and res.latency_ms("eager") == 10.0
    lines = res.table().splitlines()
    assert lines[0] == "l3unet at 40x56, 2 threads, some CPU"
    assert lines[1].split()[:3] == ["backend", "median", "ms"]
    assert lines[-2:] == [
        "openvino: not available for this model (not installed)",
        "best: ort (fastest)",
    ]
    with pytest.raises(EdgesegError, match="schema"):
        BenchResult.from_dict({**old, "schema": "edgeseg.bench/2"})
