"""edgeseg compare --ray on a real two-node Ray cluster (loopback): the same models,
epochs and val mIoU as on one machine, the bench on the chosen node, a killed node
survived; bad addresses are one line, exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.workflows.compare import compare, load_compare_config
from tests.raycluster import ENV, local_cluster
from tests.synthetic import make_list_dataset

MODELS = ["l3unet", "squeeze_unet", "essnet"]


def _overrides(data: Path, out: Path) -> list[str]:
    return [
        f"out={out}",
        f"models={json.dumps(MODELS)}",
        "budget=4 epochs",  # work, not time: the same schedule on any node
        "threads=1",
        "backends=[eager]",
        "bench_iterations=2",
        "bench_repeats=1",
        "bench_images=2",
        "preview_images=1",
        f"recipe.data.root={data}",
        "recipe.data.preset=custom",
        "recipe.data.classes=[a, b, c]",
        "recipe.data.crop_size=32x48",
        "recipe.train.batch_size=4",
        "recipe.train.progress=false",
        "recipe.train.tensorboard=false",
        "recipe.train.save_every_steps=2",
    ]


@pytest.mark.slow
def test_compare_on_two_nodes_equals_one_machine_and_survives_a_lost_node(
    tmp_path: Path,
) -> None:
    data = make_list_dataset(tmp_path / "data", {"train": 24, "val": 3}, size=(40, 56))
    here = compare(load_compare_config(None, _overrides(data, tmp_path / "here")), report=False)
    cluster = local_cluster()
    try:
        out = tmp_path / "ray"
        cmd = [
            sys.executable,
            "-m",
            "edgeseg",
            "compare",
            *_overrides(data, out),
            "--ray",
            cluster.address,
            "--json",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        # Kill the second node once both nodes train (two run folders have a log).
        end = time.monotonic() + 300
        while time.monotonic() < end and proc.poll() is None:
            if len(list((out / "runs").glob("*/last.pt"))) >= 2:
                break
            time.sleep(0.2)
        mid_run = proc.poll() is None
        cluster.kill_second_node()
        stdout, stderr = proc.communicate(timeout=900)
        # The driver run again (as after its own crash): every finished model is kept.
        again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    finally:
        cluster.stop()
    assert mid_run, "the comparison ended before the node could be killed"
    assert proc.returncode == 0, stderr[-2000:]
    res = json.loads(stdout)
    assert again.returncode == 0, again.stderr[-2000:]
    kept = json.loads(again.stdout)
    assert all(kept["models"][m]["train"] == res["models"][m]["train"] for m in MODELS)
    assert kept == json.loads((out / "results.json").read_text())
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    bench_node = res["cluster"]["bench_node"]["node_id"]
    for name in MODELS:
        ray_e, one = res["models"][name], here["models"][name]
        assert ray_e["status"] == "done", ray_e.get("error")
        assert ray_e["train"]["epochs_done"] == one["train"]["epochs_done"] == 4
        assert ray_e["metrics"]["miou"] == pytest.approx(one["metrics"]["miou"], abs=1e-6)
        assert ray_e["nodes"]["profile"]["node_id"] == bench_node  # timed on the chosen node
        assert set(ray_e["stages"]) == {"train", "evaluate", "profile", "bench", "preview"}


def _args(tmp_path: Path) -> list[str]:
    data = make_list_dataset(tmp_path / "data", {"train": 4, "val": 2}, size=(24, 32))
    return [
        "compare",
        "--models",
        "l3unet",
        "--data",
        str(data),
        "--preset",
        "custom",
        "--out",
        str(tmp_path / "o"),
        "recipe.data.classes=[a, b, c]",
    ]


def test_an_address_without_a_ray_head_is_one_line(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    args = _args(tmp_path)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main([*args, "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Ray head answers" in err, err
    # A port that accepts and stays silent (not a Ray head) is refused within seconds.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    held: list = []  # the accepted connection stays open and silent
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    assert main([*args, "--ray", f"127.0.0.1:{silent.getsockname()[1]}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Ray head answers" in err, err
    silent.close()
    assert not (tmp_path / "o" / "runs").exists()  # nothing trained


def test_without_the_extra_ray_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    assert main([*_args(tmp_path), "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'edgeseg[ray]'" in err, err
    assert not (tmp_path / "o" / "runs").exists()  # nothing trained
