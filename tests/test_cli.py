from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from edgeseg.cli import main
from tests.cli_checks import assert_one_line_exit_2

#: Profiling options that keep a CLI test to a second or two.
FAST = ("--threads", "1", "--warmup", "1", "--repeats", "2")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile", "no_such_model", "--size", "32x32"], "unknown model 'no_such_model'"),
        (["profile", "unet", "--size", "360by480"], "--size"),
        (["profile", "unet", "--size", "0x480"], "--size"),
        (["profile", "unet", "--classes", "0"], "--classes"),
        (["profile", "unet", "--classes", "-3"], "--classes"),
        (["profile", "unet", "--threads", "0"], "--threads"),
        (["profile", "unet", "--threads", "-2"], "--threads"),
        (["models", "--size", "abc"], "--size"),
        (["models", "zzz*"], "no model matches"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_python_m_edgeseg_bad_model_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg", "profile", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("edgeseg: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["squeeze_unet"]["conv_weights"] == 2_613_952 + 64 * 11
    assert by_name["unet"]["flops"] > by_name["squeeze_unet"]["flops"]


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "squeeze*"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ["squeeze_encdec", "squeeze_unet", "squeeze_unet_dws"]


def test_models_show_shipped_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = {r["name"]: r["pretrained"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {
        "ddrnet23_slim": ["ddrnet_camvid"],
        "erfnet": ["erfnet_camvid"],
        "segfast": ["segfast_camvid"],
        "squeeze_unet": ["squeeze_unet_camvid"],
        "ppliteseg_efficientnet_lite0": ["ppliteseg_lite0_camvid"],
    }
    assert main(["models", "segfast*"]) == 0
    table = capsys.readouterr().out
    assert "shipped weights" in table and "segfast_camvid" in table


def test_profile_json_and_out_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    argv = ["profile", "squeeze_unet", "--size", "48x64", "--classes", "3", *FAST]
    assert main([*argv, "--json", str(out)]) == 0  # --json FILE writes it, prints the table
    assert "median ms" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0  # --json prints it
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == json.loads(out.read_text())["model"] == "squeeze_unet"
    assert printed["num_classes"] == 3


def test_profile_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "unet", "--size", "32x32", *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "time per stage" in out and "head" in out


# ----------------------------------------------------------------------------- train/eval/predict


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_train_eval_predict_commands(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = tiny_run
    code, out, err = _run(["eval", str(run), "--data", str(data), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert {
        "miou",
        "pixel_acc",
        "mean_acc",
        "iou",
        "tp_rate",
        "fp_tp",
        "num_images",
        "input_size",
    } <= set(res)
    code, out, _ = _run(
        [
            "eval",
            str(run),
            "--data",
            str(data),
            "--paper-protocol",
            "--json",
            str(tmp_path / "m.json"),
        ],
        capsys,
    )
    assert code == 0 and "mIoU" in out and "per batch of 8" in out
    assert json.loads((tmp_path / "m.json").read_text())["batches"]["count"] == 1
    code, out, _ = _run(
        ["predict", str(run), str(data / "test"), "--out", str(tmp_path / "p")], capsys
    )
    assert code == 0 and "segmented 3 image(s)" in out
    assert len(list((tmp_path / "p" / "overlays").glob("*.png"))) == 3


def test_train_command_and_resume(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = tiny_run
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"data: {{root: {data}, preset: custom, classes: [a, b, c], crop_size: 32x48}}\n"
        "train: {epochs: 1, batch_size: 4, progress: false}\n"
    )
    out = tmp_path / "run"
    code, stdout, err = _run(["train", str(recipe), "--out", str(out)], capsys)
    assert code == 0, err
    assert "1 epoch(s), best val mIoU" in stdout
    code, stdout, err = _run(["train", "--resume", str(out), "train.epochs=2"], capsys)
    assert code == 0, err
    assert "2 epoch(s)" in stdout
    code, _, err = _run(["train", "--resume", str(out), "model.name=unet"], capsys)
    _one_line_error(code, err, "trains 'squeeze_unet' {}, the config asks for 'unet'")


def test_train_eval_predict_bad_input(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = tiny_run
    bad_root = tmp_path / "nodata"
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a zip file")
    (data / "broken.txt").write_text("val/000.png\n")
    cases = [
        (
            ["train", f"data.root={bad_root}", f"train.out={tmp_path / 'x'}"],
            f"data root is not a folder: {bad_root}",
        ),
        (["train", f"data.root={data}", "train.epochz=1"], "unknown key train.epochz"),
        (["train", str(tmp_path / "missing.yaml")], "config file not found"),
        (["train", "--resume", str(tmp_path / "norun")], "no config.yaml there"),
        (["eval", str(run), "--data", str(bad_root)], "data root is not a folder"),
        (
            ["eval", str(run), "--data", str(data), "--split", "broken"],
            "broken.txt:1: expected 'image_path label_path'",
        ),
        (
            ["eval", str(tmp_path / "foreign.pt"), "--data", str(data)],
            "is not an edgeseg checkpoint",
        ),
        (["eval", str(tmp_path / "corrupt.pt"), "--data", str(data)], "cannot read checkpoint"),
        (["eval", str(tmp_path / "none.pt"), "--data", str(data)], "checkpoint not found"),
        (["eval", str(run), "--data", str(data), "--preset", "camvid"], "predicts 3 classes"),
        (["eval", str(run), "--data", str(data), "--preset", "kitti"], "unknown dataset preset"),
        (
            ["predict", str(run), str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")],
            "image or folder not found",
        ),
    ]
    for argv, needle in cases:
        code, _, err = _run(argv, capsys)
        _one_line_error(code, err, needle)


def test_models_flops_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["models", "essnet", "--flops", "thesis", "--size", "512x1024", "--classes", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "thesis GFLOPs@512x1024" in out and "5.76" in out


def test_train_time_budget_plans_and_says_so(tmp_path: Path, capsys, caplog) -> None:
    """``--time``: the planned epochs are printed before training, the schedule is re-planned
    inside the budget, and the run's first steps announce how long the rest takes."""
    from tests.synthetic import make_list_dataset

    data = make_list_dataset(tmp_path / "data", {"train": 8, "val": 2}, size=(32, 48))
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "segfast",
        "--data",
        str(data),
        "--out",
        str(run),
        "--time",
        "2m",
        "--epochs",
        "3",
        "data.preset=custom",
        "data.classes=[a, b, c]",
        "data.crop_size=32x48",
        "train.batch_size=2",
        "train.progress=false",
    ]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "planned: " in out.out and "epochs of 4 steps" in out.out
    assert "of training left" in caplog.text  # the Trainer's own, after its first steps
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["replan"] is True and 0 < saved["train"]["max_minutes"] < 2


def test_train_time_in_epochs_and_bad_forms(tmp_path: Path, capsys) -> None:

    assert_one_line_exit_2(
        ["train", "--model", "segfast", "--data", str(tmp_path), "--time", "soon"], "--time", capsys
    )


def test_models_pretrained_shows_accuracy_and_the_pick(capsys) -> None:
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "ppliteseg_lite0_camvid (recommended)" in out and "0.727" in out
    assert "0.694" in out and "edgeseg bench" in out


def test_models_pretrained_latency_times_each_shipped_model_here(capsys) -> None:
    """``--latency`` adds a measured column and names the CPU it was measured on; the
    timing itself is the library's (no figure is asserted)."""
    assert main(["models", "--pretrained", "--latency", "--size", "64x96"]) == 0
    out = capsys.readouterr().out
    assert "ms 64x96 here" in out and "Latency: median of one forward pass on " in out
    assert_one_line_exit_2(["models", "--latency"], "--latency", capsys)
