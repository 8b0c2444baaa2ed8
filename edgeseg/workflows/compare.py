"""``edgeseg compare``: train, evaluate, profile and benchmark several models side by side.

For each model, in order, five stages run and their results are written to
``OUT/results.json`` (atomically) as soon as each one ends:

1. ``train``: within a wall-time budget. A few probe steps measure this model's step
   time here, the number of epochs that fits the budget is derived from it (so the
   learning-rate schedule completes instead of being cut off), and ``train.max_minutes``
   stops it anyway if the estimate was short. A model given with a checkpoint
   (``NAME=PATH``) is not trained.
2. ``evaluate``: every metric on the validation split (mIoU, per-class IoU, accuracies).
3. ``profile``: parameters, FLOPs, size, eager latency, peak memory, per-stage time.
4. ``bench``: latency of each runtime backend in fresh processes, and each backend's mIoU
   on some validation images; the fastest within 1 mIoU point is the model's ``best``.
5. ``preview``: predictions on a few validation images for the report's grid.

Then :func:`edgeseg.workflows.report.write_report` renders ``report.md`` and ``report.html``.
Running the same command again skips what is done: finished stages are read back, a
training run that was interrupted resumes from its ``last.pt`` with the budget it had left.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from edgeseg_runtime.scale import ray_session
from PIL import Image

from edgeseg.config import (
    Config,
    _build,
    apply_overrides,
    config_to_dict,
    expand_env,
    read_yaml_mapping,
    safe_yaml,
)
from edgeseg.cpu import cpu_name
from edgeseg.data import build_dataset
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, make_street_dataset
from edgeseg.defaults import ACCURACY_BUDGET
from edgeseg.deploy.backends import check_backends
from edgeseg.deploy.segmenter import Segmenter, colorize
from edgeseg.engine.budget import (  # noqa: F401 - re-exported: compare's planner
    Budget,
    check_data,
    first_size,
    fit_to_budget,
    fit_to_work,
    parse_budget,
    plan_epochs,
    planned_seconds,
)
from edgeseg.engine.checkpoint import load_checkpoint, load_model
from edgeseg.engine.evaluate import evaluate
from edgeseg.engine.train import TrainResult, train
from edgeseg.errors import BudgetError, ConfigError, DivergedError, EdgesegError
from edgeseg.measure.bench import bench
from edgeseg.measure.profiling import profile
from edgeseg.models import model_info, register_external
from edgeseg.pretrained import PRETRAINED, pretrained_path
from edgeseg.utils import (
    atomic_write_json,
    finish_time,
    folder_lock,
    format_duration,
    text_table,
    thread_count,
)
from edgeseg.workflows.cluster import RAY_EXTRA, run_on_ray
from edgeseg.workflows.plan import PLAN_FILE, PRECISIONS, plan_ahead
from edgeseg.workflows.report import report_tables, verdict, write_report

__all__ = [
    "RESULTS_SCHEMA",
    "STAGES",
    "Budget",
    "CompareConfig",
    "CompareResults",
    "compare",
    "demo_config",
    "demo_data",
    "load_compare_config",
    "parse_budget",
    "with_overrides",
]

log = logging.getLogger(__name__)

RESULTS_SCHEMA = "edgeseg.compare/1"
STAGES = ("train", "evaluate", "profile", "bench", "preview")
DEMO_BUDGET = "60 epochs"  # equal work per model: the demo's ranking is load-independent
DEFAULT_BACKENDS = ["eager", "channels_last", "compile", "ort", "ort-int8"]


@dataclass
class CompareConfig:
    """A comparison: which models, on what data, with what budget (YAML form of the CLI)."""

    models: list[str] = field(default_factory=list)  # zoo names, torchvision:NAME, NAME=CKPT
    out: str = "compare"  # output folder: results.json, report.md/html, runs/, figures
    budget: str = "10m"  # training budget per model: 90s, 20m, 1.5h | 30 epochs | 20000 images
    budgets: dict[str, str] = field(default_factory=dict)  # per-model budgets (same forms)
    # per-model changes to the recipe, edgeseg train's KEY=VALUE: {cgnet: [train.bf16=false]}
    overrides: dict[str, list[str]] = field(default_factory=dict)
    size: tuple[int, int] | None = None  # profile/bench input HxW; null: first val image's
    threads: int = 2  # intra-op threads for training, profiling and benchmarks
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))  # to bench
    bench_iterations: int = 5  # timed runs per benchmark process
    bench_repeats: int = 2  # benchmark processes per backend (rounds interleaved)
    bench_images: int = 16  # val images for each backend's mIoU (0: skip accuracy)
    accuracy_budget: float = ACCURACY_BUDGET  # mIoU a backend (int8) may lose against fp32
    # int8 over accuracy_budget keeps its most sensitive modules in fp32 (bench's option)
    mixed_precision: bool = False
    preview_images: int = 4  # val images in the prediction grid
    # probe each model's time budget into epochs before any training (OUT/plan.json): the
    # same work per model whatever the machine does later; a resumed comparison keeps it
    plan_ahead: bool = False
    # recipe: every model in the recipe's train.bf16; auto: each in the faster of bf16 and
    # fp32 here (probed ahead; only when the recipe asks for bf16)
    precision: str = "recipe"
    rebench: bool = False  # measure every finished model's backends again, back to back
    ray: str | None = None  # Ray cluster running the models: local, auto, HOST:PORT; null: here
    bench_node: str | None = None  # with ray: node (id, IP, resource) timing every model
    recipe: Config = field(default_factory=Config)  # shared training recipe (edgeseg train's)


#: Sections of the training recipe: ``data.ignore_index=11`` means ``recipe.data...``, as
#: in ``edgeseg train`` (one meaning per key).
RECIPE_SECTIONS = ("model.", "data.", "optim.", "sched.", "train.", "compress.")


def _yaml_value(raw: str) -> Any:
    """An override's value as YAML, or the text itself (as ``apply_overrides`` reads it)."""
    try:
        return safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _from_dict(data: dict[str, Any], overrides: Sequence[str], where: Any) -> CompareConfig:
    plain = [o for o in overrides if "." not in o.split("=", 1)[0]]
    dotted = [
        f"recipe.{o}" if o.startswith(RECIPE_SECTIONS) else o for o in overrides if o not in plain
    ]
    for item in plain:
        key, _, raw = item.partition("=")
        data[key.strip()] = _yaml_value(raw)
    data = apply_overrides(data, dotted)
    try:
        cfg = _build(CompareConfig, expand_env(data), "")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
    if not 0 <= cfg.accuracy_budget < 1:  # also refuses nan; checked before any training
        raise ConfigError(f"accuracy_budget {cfg.accuracy_budget}: an mIoU fraction in [0, 1)")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision {cfg.precision!r}: choose one of {PRECISIONS}")
    if cfg.precision == "auto" and not cfg.plan_ahead:
        raise ConfigError("precision: auto is chosen while planning ahead: set plan_ahead: true")
    return cfg


def load_compare_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> CompareConfig:
    """A :class:`CompareConfig` from YAML plus ``key=value`` overrides (unknown keys error).

    Overrides use the file's paths: ``budget=5m``, ``recipe.optim.lr=1e-3``; a recipe key
    may drop its ``recipe.`` (``data.ignore_index=11``), as ``edgeseg train`` spells it.
    """
    data = read_yaml_mapping(path, "compare config") if path is not None else {}
    return _from_dict(data, overrides, path)


def with_overrides(cfg: CompareConfig, overrides: Sequence[str]) -> CompareConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied (as :func:`load_compare_config`)."""
    return _from_dict(dataclasses.asdict(cfg), overrides, None) if overrides else cfg


def demo_config(out: str | Path) -> CompareConfig:
    """The README's main-job comparison: three light models on generated street scenes.

    Runs in about five minutes on two cores: data are written to ``OUT/data`` (small
    scenes, 120x160), each model trains for the same 60 epochs (a budget of work, not of
    time, so the verdict does not depend on what else the machine runs), and the
    benchmark keeps the three backends that matter most on a CPU.
    """

    recipe = Config()
    recipe.data = dataclasses.replace(
        recipe.data,
        root=str(Path(out) / "data"),
        preset="custom",
        classes=list(SYNTHETIC_CLASSES),
        ignore_index=255,
        crop_size=(96, 128),
        scale=(0.75, 1.25),
        in_memory=True,
    )
    recipe.optim = dataclasses.replace(recipe.optim, name="adamw", lr=3e-3)
    recipe.train = dataclasses.replace(recipe.train, batch_size=8)
    return CompareConfig(
        models=["segfast", "essnet", "l3unet"],
        out=str(out),
        budget=DEMO_BUDGET,
        backends=["eager", "channels_last", "ort"],
        bench_iterations=5,
        bench_repeats=2,
        bench_images=8,
        recipe=recipe,
    )


def demo_data(cfg: CompareConfig) -> Path:
    """Write the demo's generated street scenes to ``cfg.recipe.data.root`` unless they
    are there already (a resumed demo keeps its data); returns the root."""
    root = Path(cfg.recipe.data.root)
    if not (root / "val.txt").is_file():
        make_street_dataset(root)
    return root


# --------------------------------------------------------------------------- helpers


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``"NAME=CKPT"`` -> ``(NAME, CKPT)``; ``"NAME"`` -> ``(NAME, None)``."""
    name, sep, ckpt = spec.partition("=")
    name = name.strip()
    if not name or (sep and not ckpt.strip()):
        raise EdgesegError(f"--models: {spec!r} is not NAME or NAME=CHECKPOINT")
    return name, (ckpt.strip() if sep else None)


def _label(name: str) -> str:
    """A file-system-safe folder name for a model name (``torchvision:x`` -> ``torchvision-x``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


class CompareResults(dict):  # type: ignore[type-arg]  # OUT/results.json, keys typed below
    """What :func:`compare` returns: the content of ``OUT/results.json`` (``schema``,
    ``config``, ``machine``, ``order``, ``models`` ``{name: {status, train, metrics,
    profile, bench, preview, stages, error?}}``, ``plan`` when planned ahead), typed
    accessors, and the one :meth:`table` the CLI prints (the report's first table)."""

    @property
    def failed(self) -> dict[str, str]:
        """``{model: error}`` of the models that failed."""
        models = self.get("models", {})
        return {n: str(e.get("error")) for n, e in models.items() if e.get("status") == "failed"}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready)."""
        return dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResults:
        """Results read back from ``results.json``.

        Raises:
            EdgesegError: not an edgeseg comparison of a schema this edgeseg reads.
        """
        if data.get("schema") != RESULTS_SCHEMA:
            raise EdgesegError(f"not an edgeseg comparison ({RESULTS_SCHEMA})")
        return cls(data)

    def table(self) -> str:
        """The verdict, accuracy and cost per model, and each failure."""
        header, rows = report_tables(self)["Accuracy and cost"]
        lines = ["Verdict: " + " ".join(verdict(self)), text_table(rows, header)]
        lines += [f"{name}: failed ({err})" for name, err in self.failed.items()]
        return "\n".join(lines)


class _Results:
    """``OUT/results.json``: read back on start, rewritten atomically after each stage."""

    def __init__(self, out: Path, cfg: CompareConfig) -> None:
        from edgeseg import __version__

        self.path = out / "results.json"
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                raise EdgesegError(
                    f"{self.path}: not valid JSON; move it away to start over"
                ) from None
            if self.data.get("schema") != RESULTS_SCHEMA:
                raise EdgesegError(f"{self.path}: not an edgeseg comparison ({RESULTS_SCHEMA})")
            old_root = self.data.get("data", {}).get("root")
            if old_root and Path(old_root).resolve() != Path(cfg.recipe.data.root).resolve():
                raise EdgesegError(
                    f"{out} holds a comparison on {old_root}; choose another --out for "
                    f"{cfg.recipe.data.root}"
                )
        self.data.setdefault("schema", RESULTS_SCHEMA)
        self.data.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.data.setdefault("models", {})
        self.data["edgeseg_version"] = __version__
        self.data["machine"] = {
            "cpu": cpu_name(),
            "threads": cfg.threads,
            "torch": torch.__version__,
        }
        self.data["config"] = _plain(dataclasses.asdict(cfg))
        self.data["data"] = {"root": str(cfg.recipe.data.root)}
        self.data["order"] = [_split_spec(s)[0] for s in cfg.models]

    def model(self, name: str) -> dict[str, Any]:
        return self.data["models"].setdefault(name, {"name": name, "stages": {}})

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------- stages


def _budget_of(cfg: CompareConfig, name: str) -> Budget:
    return parse_budget(cfg.budgets.get(name, cfg.budget))


def recipe_of(cfg: CompareConfig, name: str) -> Config:
    """The recipe model ``name`` trains with: the shared one, its ``overrides`` applied.

    Raises:
        ConfigError: naming ``overrides.NAME`` when an override is not a recipe key=value.
    """
    items = cfg.overrides.get(name, [])
    if not items:
        return copy.deepcopy(cfg.recipe)
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"overrides.{name}: expected a list of KEY=VALUE, got {items!r}")
    try:
        return _build(Config, apply_overrides(config_to_dict(cfg.recipe), items), "")
    except ConfigError as e:
        raise ConfigError(f"overrides.{name}: {e}") from None


def _model_recipe(cfg: CompareConfig, name: str) -> Config:
    """The recipe ``name`` trains with, the model set and its threads the comparison's."""
    recipe = recipe_of(cfg, name)
    recipe.model.name = name
    if recipe.model.encoder_weights and "pretrained-encoder" not in model_info(name).tags:
        # A shared recipe's encoder_weights is for the models that have an encoder.
        recipe.model.encoder_weights = None
        recipe.train.freeze_encoder_bn, recipe.train.freeze_encoder_epochs = False, 0.0
    recipe.train.threads = cfg.threads
    return recipe


def _announce_plan(
    cfg: CompareConfig, run: _Run, specs: list[tuple[str, str | None]], results: _Results
) -> float:
    """State, before any training, how long the comparison's trainings take here: a time
    budget is its own figure, a budget of work is probed per model (a few seconds each).
    Returns the planned seconds."""
    total, todo = 0.0, 0
    for name, given in specs:
        if given or results.model(name).get("status") == "done":
            continue
        recipe = _model_recipe(cfg, name)
        total += planned_seconds(recipe, _budget_of(cfg, name), run.info, run.val)
        todo += 1
    if todo:
        log.warning(
            f"planned: {todo} model{'s' * (todo > 1)} to train, about "
            f"{format_duration(total)} of training on {cpu_name()} (plus evaluation and "
            f"benchmark of each), until about {finish_time(total)}"
        )
    return total


def _plan(
    cfg: CompareConfig, name: str, entry: dict[str, Any], recipe: Config, ctx: tuple[Any, ...]
) -> None:
    """Fit a new run's epochs to the model's budget (probed for a time budget); ``ctx``:
    ``(dataset info, val dataset, training images)``."""
    info, val, train_len = ctx
    budget = _budget_of(cfg, name)
    if budget.kind != "time":
        entry["planned_epochs"] = fit_to_work(recipe, budget, train_len)
        return
    probe = fit_to_budget(recipe, budget.value, info=info, val=val, name=name)
    entry.update(
        probe_seconds=probe["probe_seconds"],
        probe_step_s=probe["step_s"],
        planned_epochs=probe["epochs"],
    )
    log.info(
        "%s: %.2f s per step here -> %d epochs of %d steps in the %s budget",
        name,
        probe["step_s"],
        probe["epochs"],
        probe["steps_per_epoch"],
        cfg.budget,
    )


def _train_len(recipe: Config, info: Any) -> int:
    splits = recipe.data.train_split.split("+")
    return sum(len(build_dataset(recipe.data.root, s, info)) for s in splits)


def _train_or_fp32(
    cfg: CompareConfig,
    name: str,
    entry: dict[str, Any],
    recipe: Config,
    resume: bool,
    ctx: tuple[Any, ...],
) -> TrainResult:
    """Train; a run that diverges in bfloat16 is trained again, planned afresh, in fp32
    (its bf16 run kept beside it as ``runs/NAME.bf16-nan``). In fp32 the error stands."""
    try:
        return train(recipe, resume=resume)
    except DivergedError as e:
        if not recipe.train.bf16:
            raise
        run_dir = Path(recipe.train.out)
        keep = run_dir.with_name(run_dir.name + ".bf16-nan")
        log.warning("%s: %s in bf16; training it again in fp32", name, e)
        shutil.rmtree(keep, ignore_errors=True)
        run_dir.rename(keep)
        entry["bf16_diverged"] = str(e)
        recipe.train.bf16 = False
        _plan(cfg, name, entry, recipe, ctx)
        return train(recipe)


def _stage_train(
    cfg: CompareConfig, name: str, entry: dict[str, Any], out: Path, info: Any, val: Any
) -> Path:
    run_dir = out / "runs" / _label(name)
    budget = _budget_of(cfg, name)
    recipe = _model_recipe(cfg, name)
    recipe.train.out = str(run_dir)
    ctx = (info, val, _train_len(recipe, info))  # the split is read once per model
    resume = (run_dir / "last.pt").is_file()
    if resume:
        saved = safe_yaml((run_dir / "config.yaml").read_text(encoding="utf-8"))
        recipe = _build(Config, saved, "")
        if budget.kind == "time":
            spent = _spent_seconds(_history(run_dir)) + float(entry.get("probe_seconds", 0))
            recipe.train.max_minutes = max(budget.value - spent, 30.0) / 60
        log.info("%s: resuming its training", name)
    else:
        _plan(cfg, name, entry, recipe, ctx)
    result = _train_or_fp32(cfg, name, entry, recipe, resume, ctx)
    history = _history(run_dir)
    per_epoch = max(1, ctx[2] // recipe.train.batch_size)
    entry["train"] = {
        "budget": str(budget),
        "bf16": recipe.train.bf16,
        "epochs_done": result.epochs_done,
        "epochs": recipe.train.epochs,
        "images": result.epochs_done * per_epoch * recipe.train.batch_size,
        "seconds": _spent_seconds(history),
        "best_epoch": result.best_epoch,
        "stopped_by_budget": result.stopped_by_budget,
        "schedule_finished": (
            not result.stopped_by_budget and result.epochs_done >= recipe.train.epochs
        ),
        "run_dir": str(run_dir),
    }
    entry["history"] = history
    best = run_dir / "best.pt"
    return best if best.is_file() else run_dir / "last.pt"


def _spent_seconds(history: list[dict[str, Any]]) -> float:
    """Training plus validation seconds of the epochs in a run's log."""
    return sum(float(r.get("epoch_seconds", 0)) + float(r.get("eval_seconds", 0)) for r in history)


def _stage_evaluate(cfg: CompareConfig, ckpt: Path, info: Any) -> dict[str, Any]:

    metrics = evaluate(
        ckpt,
        cfg.recipe.data.root,
        cfg.recipe.data.val_split or "val",
        info=info,
        input_size=cfg.recipe.data.eval_size,
        threads=cfg.threads,
    )
    keep = ("miou", "pixel_acc", "mean_acc", "iou", "tp_rate", "num_images", "confusion_matrix")
    return {k: _plain(metrics[k]) for k in keep if k in metrics}


def _stage_profile(cfg: CompareConfig, ckpt: Path, size: tuple[int, int]) -> dict[str, Any]:

    model, meta = load_model(ckpt)
    res = profile(model, size, threads=cfg.threads, repeats=10, name=meta["model"]["name"])
    return res.to_dict()


def _importable(factory: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` of a factory a fresh process can import, else None."""
    module, qual = getattr(factory, "__module__", ""), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qual or not qual:
        return None
    return f"{module}:{qual}"


def _stage_bench(
    cfg: CompareConfig,
    ckpt: Path,
    size: tuple[int, int],
    work: Path,
    external: dict[str, str] | None,
    onnx_only: bool,
) -> dict[str, Any]:

    root = cfg.recipe.data.root
    backends = cfg.backends
    if onnx_only:
        backends = [b for b in backends if b in ("ort", "ort-int8")] or ["ort"]
        log.info(
            "this network is not importable by a fresh process: benchmarking %s only",
            ", ".join(backends),
        )
    res = bench(
        str(ckpt),
        size=size,
        threads=cfg.threads,
        backends=backends,
        external=external,
        iterations=cfg.bench_iterations,
        repeats=cfg.bench_repeats,
        data=root if cfg.bench_images else None,
        split=cfg.recipe.data.val_split or "val",
        eval_images=cfg.bench_images or None,
        calib_data=root,
        calib_split=cfg.recipe.data.train_split.split("+")[0],
        budget_miou=cfg.accuracy_budget,
        mixed_precision=cfg.mixed_precision and bool(cfg.bench_images),
        workdir=work,
    )
    # The ONNX artefacts stay for the user (the winner ready to deploy); their sizes are
    # in the result. Calibration and eval tensors are scratch.
    for scratch in ("calib.pt", "eval.pt"):
        (work / scratch).unlink(missing_ok=True)
    for f in work.glob("pred-*.npy"):
        f.unlink()
    return res


def _stage_preview(
    cfg: CompareConfig, ckpt: Path, name: str, out: Path, val: Any
) -> dict[str, Any]:

    seg = Segmenter(ckpt, threads=cfg.threads, input_size=cfg.recipe.data.eval_size)
    folder = out / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(min(cfg.preview_images, len(val))):
        image, label = val.load_pair(i)
        img_path, gt_path = folder / f"image_{i}.png", folder / f"truth_{i}.png"
        if not gt_path.is_file():
            Image.fromarray(image).save(img_path)
            truth = np.where(label == seg.info.ignore_index, 0, label).astype(np.uint8)
            rgb = colorize(truth, seg.info.palette)
            rgb[label == seg.info.ignore_index] = 255  # void shows white
            Image.fromarray(rgb).save(gt_path)
        pred = seg.colorize(seg(image))
        p = folder / f"{_label(name)}_{i}.png"
        Image.fromarray(pred).save(p)
        files.append(p.name)
    return {"files": files}


# --------------------------------------------------------------------------- driver


def compare(
    cfg: CompareConfig,
    *,
    extra_models: dict[str, Callable[..., torch.nn.Module]] | None = None,
    report: bool = True,
) -> CompareResults:
    """Run (or resume) a comparison and write its results and report.

    Args:
        cfg: the comparison (:class:`CompareConfig`); ``cfg.models`` may name zoo models,
            ``torchvision:NAME`` models, models of ``extra_models``, and ``NAME=CHECKPOINT``
            for a model that is already trained (evaluated, profiled and benchmarked only).
        extra_models: networks outside the zoo, ``{name: factory(num_classes=K)}``; each is
            registered (:func:`edgeseg.models.register_external`) and trained like the
            others. Their benchmarks run the ONNX backends only unless the factory lives in
            an importable module (a fresh benchmark process must be able to rebuild it).
        report: write ``report.md`` and ``report.html`` at the end.

    Returns:
        The content of ``OUT/results.json``, as :class:`CompareResults`.

    Raises:
        EdgesegError: an unknown model, an unreadable data root, a budget that cannot be
            parsed, a results file from another comparison: all checked before any work.
            A model that fails later is recorded with its error; the others still run.
    """
    if not cfg.models:
        raise EdgesegError("--models: name at least one model")
    parse_budget(cfg.budget)
    for name, spec in cfg.budgets.items():
        parse_budget(spec)
        if name not in [_split_spec(m)[0] for m in cfg.models]:
            raise EdgesegError(f"budgets: {name!r} is not one of the models {cfg.models}")
    for name in cfg.overrides:
        if name not in [_split_spec(m)[0] for m in cfg.models]:
            raise EdgesegError(f"overrides: {name!r} is not one of the models {cfg.models}")
        recipe_of(cfg, name)  # a bad key fails here, before any work
    check_backends(cfg.backends)
    thread_count(cfg.threads, "--threads")
    external, not_importable = _register_extra(extra_models or {})
    specs = _check_models(cfg.models)
    info, val = check_data(cfg.recipe)
    run = _Run(cfg, Path(cfg.out), info, val, external, not_importable)
    run.size = cfg.size or cfg.recipe.data.eval_size or first_size(val)
    run.extra = dict(extra_models or {})
    with folder_lock(run.out, "compare folder"):  # one comparison writes a folder at a time
        return _compare_locked(cfg, run, info, specs, report)


def _compare_locked(
    cfg: CompareConfig, run: _Run, info: Any, specs: list[tuple[str, str | None]], report: bool
) -> dict[str, Any]:
    results = _Results(run.out, cfg)
    results.data.update(
        size=list(run.size), classes=list(info.classes), palette=[list(c) for c in info.palette]
    )
    if cfg.rebench:
        _forget_bench(results.data)
    if cfg.plan_ahead:  # budgets become epochs (and precisions are chosen) before training
        cfg = run.cfg = _planned(cfg, [n for n, given in specs if given is None], run.out)
        results.data["plan"] = json.loads((run.out / PLAN_FILE).read_text(encoding="utf-8"))
    results.save()
    # A cluster that cannot be reached fails here, before any plan or work.
    with ray_session(cfg.ray, extra=RAY_EXTRA) if cfg.ray else contextlib.nullcontext():
        _announce_plan(cfg, run, specs, results)
        if cfg.ray:  # the report so far after each model: results stream in as they end
            so_far = (lambda: write_report(_finished(results.data), run.out)) if report else None
            run_on_ray(cfg, specs, results, run.size, run.extra, _label_kept, stages_task, so_far)
        else:
            for k, (name, given) in enumerate(specs, start=1):
                _one_model(run, results, name, given, f"[{k}/{len(specs)}] {name}")
    if report:
        write_report(results.data, run.out)
    return CompareResults(results.data)


def _planned(cfg: CompareConfig, trained: list[str], out: Path) -> CompareConfig:
    """``cfg`` with the plan's budgets (as epochs) and precision overrides for the models
    trained here (:func:`edgeseg.workflows.plan.plan_ahead`)."""
    plan = plan_ahead(trained, cfg.budget, cfg.recipe, cfg.threads, out, cfg.precision)
    if "cpu" not in plan:  # a budget of work: nothing to probe, the file records it
        atomic_write_json(out / PLAN_FILE, plan)
    overrides = {
        n: [*cfg.overrides.get(n, []), *plan["overrides"].get(n, [])]
        for n in {*cfg.overrides, *plan["overrides"]}
    }
    budgets = {**plan["budgets"], **cfg.budgets}  # a budget set for one model stands
    return dataclasses.replace(cfg, budgets=budgets, overrides=overrides)


def _forget_bench(data: dict[str, Any]) -> None:
    """``rebench``: every finished model's bench and preview run again, back to back."""
    for e in data.get("models", {}).values():
        if e.get("status") == "done":
            for key in ("bench", "preview"):
                e.pop(key, None)
                e.get("stages", {}).pop(key, None)
            e["status"] = "pending"


def _finished(data: dict[str, Any]) -> dict[str, Any]:
    """The results with only the models that ended (done or failed): a report so far."""
    models = {k: v for k, v in data["models"].items() if v.get("status") in ("done", "failed")}
    order = [n for n in data["order"] if n in models]
    return {**data, "models": models, "order": order}


def _one_model(run: _Run, results: _Results, name: str, given: str | None, where: str) -> None:
    """Every stage of one model here; a failure is recorded and the others still run."""
    cfg = run.cfg
    entry = results.model(name)
    budget = cfg.budgets.get(name, cfg.budget)
    if entry.get("status") == "done":
        _label_kept(entry, budget, where)
        return
    entry.pop("error", None)
    entry["status"] = "running"
    try:
        run.model(name, Path(given) if given else None, entry, results, where)
        entry["status"], entry["budget"] = "done", budget
        entry.pop("budget_note", None)
    except BudgetError as e:  # this model cannot fit its budget: the others still run
        entry["status"], entry["error"] = "failed", f"budget {budget}: {e}"
        log.error("%s: %s", name, e)
    except EdgesegError as e:
        entry["status"], entry["error"] = "failed", str(e)
        log.error("%s: %s", name, e)
    results.save()
    if entry["status"] == "done":
        miou = entry.get("metrics", {}).get("miou") or 0.0
        log.info("%s: mIoU %.3f, best backend %s", where, miou, entry.get("bench", {}).get("best"))


class _NoSave:
    """The results a Ray task sees: its stages record into the entry; the driver saves."""

    def save(self) -> None:
        pass


def stages_task(
    cfg: CompareConfig,
    name: str,
    given: str | None,
    entry: dict[str, Any],
    stages: tuple[str, ...],
    size: tuple[int, int],
    extra: dict[str, Callable[..., torch.nn.Module]],
) -> dict[str, Any]:
    """Some stages of one model, in a Ray worker (:mod:`edgeseg.workflows.cluster`).

    Returns:
        The model's entry with those stages recorded, the node that ran them under
        ``nodes``; a model that fails comes back ``failed`` with the reason, as here.
    """
    import ray

    external, not_importable = _register_extra(extra)
    out = Path(cfg.out)
    if not out.is_dir():  # the driver made it: this node does not share its file system
        entry["status"], entry["error"] = "failed", f"--out {out} is not on this node"
        return entry
    entry.setdefault("nodes", {})[stages[0]] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "cpu": cpu_name(),
    }
    budget = cfg.budgets.get(name, cfg.budget)
    try:
        info, val = check_data(cfg.recipe)
        run = _Run(cfg, out, info, val, external, not_importable, size=size)
        run.model(name, Path(given) if given else None, entry, _NoSave(), name, stages)
    except BudgetError as e:
        entry["status"], entry["error"] = "failed", f"budget {budget}: {e}"
    except EdgesegError as e:
        entry["status"], entry["error"] = "failed", str(e)
    return entry


def _label_kept(entry: dict[str, Any], budget: str, where: str) -> None:
    """A model finished by an earlier run is kept; one trained with another budget is
    labelled with the budget it had (the report flags it), not silently mixed in."""
    had = entry.get("budget")
    if had is not None and had != budget:
        entry["budget_note"] = f"trained with budget {had}, not {budget}"
        log.warning(
            "%s: kept from an earlier run with budget %s (this run's: %s); use another --out "
            "to train it again",
            where,
            had,
            budget,
        )
    else:
        log.info("%s: done before, kept", where)


def _register_extra(
    extra: dict[str, Callable[..., torch.nn.Module]],
) -> tuple[dict[str, str], set[str]]:
    """Register networks from outside the zoo; ``({name: "module:factory"}, names whose
    factory a fresh benchmark process cannot import)``."""
    external: dict[str, str] = {}
    not_importable: set[str] = set()
    for name, factory in extra.items():
        try:
            model_info(name)
        except EdgesegError:
            register_external(name, factory)
        target = _importable(factory)
        if target:
            external[name] = target
        else:
            not_importable.add(name)
    return external, not_importable


def _check_models(models: Sequence[str]) -> list[tuple[str, str | None]]:
    """``[(name, checkpoint or None)]``; unknown names, duplicates and missing or
    unreadable checkpoints fail here, before any work."""
    specs = [_split_spec(s) for s in models]
    names = [n for n, _ in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EdgesegError(f"--models: {dup[0]!r} is listed twice")
    out = []
    for name, ckpt in specs:
        if ckpt is None:
            model_info(name)  # unknown names fail here, naming the closest ones
        elif not Path(ckpt).exists() and ckpt in PRETRAINED:  # shipped weights by name
            ckpt = str(pretrained_path(ckpt))
        elif not Path(ckpt).exists():
            raise EdgesegError(
                f"--models {name}={ckpt}: no such checkpoint (nor shipped weights: "
                f"{', '.join(sorted(PRETRAINED))})"
            )
        if ckpt is not None:  # a corrupt or foreign file fails now, not after the others
            try:
                load_checkpoint(ckpt)
            except EdgesegError as e:
                raise EdgesegError(f"--models {name}={ckpt}: {e}") from None
        out.append((name, ckpt))
    return out


@dataclass
class _Run:
    """What every model's stages share in one comparison."""

    cfg: CompareConfig
    out: Path
    info: Any  # DatasetInfo of the data
    val: Any  # the validation dataset
    external: dict[str, str]
    not_importable: set[str]
    size: tuple[int, int] = (0, 0)
    extra: dict[str, Callable[..., torch.nn.Module]] = field(default_factory=dict)

    def model(
        self,
        name: str,
        ckpt: Path | None,
        entry: dict[str, Any],
        results: _Results | _NoSave,
        where: str,
        only: Sequence[str] = STAGES,
    ) -> None:
        """Run (or resume) the stages (``only``: some of them) of one model; a given
        checkpoint skips training."""
        stages = entry["stages"]
        for stage in STAGES:
            if stage not in only and not (stage == "train" and stages.get(stage, {}).get("done")):
                continue
            if stages.get(stage, {}).get("done"):
                if stage == "train" and ckpt is None:
                    ckpt = Path(entry["checkpoint"])
                continue
            if stage == "train" and ckpt is not None:
                entry["checkpoint"], entry["source"] = str(ckpt), "checkpoint"
                continue
            log.info("%s: %s", where, stage)
            t0 = time.perf_counter()
            ckpt = self.stage(stage, name, ckpt, entry)
            stages[stage] = {"done": True, "seconds": time.perf_counter() - t0}
            results.save()

    def stage(self, stage: str, name: str, ckpt: Path | None, entry: dict[str, Any]) -> Path:
        """One stage; returns the model's checkpoint (made by ``train``)."""
        cfg = self.cfg
        if stage == "train":
            ckpt = _stage_train(cfg, name, entry, self.out, self.info, self.val)
            entry["checkpoint"], entry["source"] = str(ckpt), "trained"
            return ckpt
        assert ckpt is not None
        if stage == "evaluate":
            entry["metrics"] = _stage_evaluate(cfg, ckpt, self.info)
        elif stage == "profile":
            entry["profile"] = _stage_profile(cfg, ckpt, self.size)
        elif stage == "bench":
            work = self.out / "artefacts" / _label(name)
            work.mkdir(parents=True, exist_ok=True)
            onnx_only = name in self.not_importable
            entry["bench"] = _stage_bench(cfg, ckpt, self.size, work, self.external, onnx_only)
        else:
            entry["preview"] = _stage_preview(cfg, ckpt, name, self.out, self.val)
        return ckpt
