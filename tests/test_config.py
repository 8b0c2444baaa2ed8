"""Typed config: YAML recipes, unknown keys, types, overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgeseg.config import Config, config_to_dict, load_config, read_yaml_mapping
from edgeseg.errors import ConfigError
from edgeseg.models import list_models

_ALL = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
# configs/compare_*.yaml are `edgeseg compare` configs (CompareConfig), the rest recipes.
CONFIGS = [p for p in _ALL if not p.stem.startswith("compare_")]
COMPARE_CONFIGS = [p for p in _ALL if p.stem.startswith("compare_")]


def test_defaults_and_overrides() -> None:
    cfg = load_config(
        None,
        [
            "data.root=/data",
            "train.epochs=3",
            "data.crop_size=64x96",
            "optim.lr=5e-4",
            "model.kwargs={norm: group}",
            "data.val_split=null",
        ],
    )
    assert isinstance(cfg, Config)
    assert cfg.train.epochs == 3 and cfg.data.crop_size == (64, 96)
    assert cfg.optim.lr == 5e-4 and cfg.model.kwargs == {"norm": "group"}
    assert cfg.data.val_split is None
    cfg.validate()


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.root=/d", "data.scale=[0.5, 1.5]", "model.kwargs={a: 1}"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["train.epoch=3"], r"unknown key train\.epoch \(known: aux_weight, batch_size"),
        (["trainer.epochs=3"], r"unknown key trainer"),
        (["train.epochs=three"], r"train\.epochs: expected an integer, got 'three'"),
        (["train.bf16=maybe"], r"train\.bf16: expected true/false"),
        (["data.crop_size=360by480"], r"data\.crop_size: expected HxW"),
        (["data.scale=[0.5]"], r"data\.scale: expected 2 values"),
        (["epochs=3"], r"expected section\.key=value"),
    ],
)
def test_bad_overrides(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["data.root=/d", "optim.name=rmsprop"], "optim.name must be one of"),
        (["data.root=/d", "sched.name=step"], "sched.name must be one of"),
        (["data.root=/d", "train.epochs=0"], "train.epochs must be positive"),
        ([], "data.root is required"),
    ],
)
def test_invalid_values(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides).validate()


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: unknown key train\.epochz"):
        load_config(bad)
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: "):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", COMPARE_CONFIGS, ids=lambda p: p.stem)
def test_shipped_compare_configs_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.workflows.compare import load_compare_config

    monkeypatch.setenv("EDGESEG_DATA", "/data/camvid")
    cfg = load_compare_config(path)
    assert cfg.recipe.data.root == "/data/camvid"
    assert cfg.models and set(cfg.models) <= set(list_models())
    cfg.recipe.validate()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_recipes_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recipes name no machine's path: the data root comes from EDGESEG_DATA or --data.
    assert "shared" not in path.read_text()
    monkeypatch.delenv("EDGESEG_DATA", raising=False)
    with pytest.raises(ConfigError, match="EDGESEG_DATA is not set"):
        load_config(path)
    assert load_config(path, ["data.root=/d"]).data.root == "/d"
    monkeypatch.setenv("EDGESEG_DATA", "/data/camvid")
    cfg = load_config(path)
    assert cfg.data.root == "/data/camvid"
    cfg.validate()
    if cfg.model.name not in list_models():
        pytest.skip(f"{cfg.model.name} is added with the rest of the zoo (issue 4)")


def test_env_defaults_expand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESEG_NOPE", raising=False)
    cfg = load_config(None, ["data.root=${EDGESEG_NOPE:-/fallback}/x"])
    assert cfg.data.root == "/fallback/x"


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("sched.min_lr", float("inf"), "sched.min_lr=inf: must be a finite number"),
        ("optim.lr", float("nan"), "optim.lr=nan: must be a finite number"),
        ("data.scale", (1.0, float("inf")), "data.scale=(1.0, inf): must be a finite number"),
        ("data.scale", (1.0, 1e6), "data.scale must be 0 < low <= high <= 8"),
        ("train.seed", 10**10, "train.seed must be in [0, 2**32)"),
        ("data.num_workers", 10**4, "data.num_workers must be in [0, "),
    ],
)
def test_values_out_of_any_sane_range_are_refused_by_name(key: str, value, needle: str) -> None:
    """A class of errors, not one field: every float must be finite; seeds, scales and
    workers are bounded before anything is allocated."""
    cfg = Config()
    cfg.data.root = "data"
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        cfg.validate()


def _laughs(levels: int = 10) -> str:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model:\n  kwargs: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64"),
        (_laughs(), "values once aliases are expanded"),
        ("a: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(300)), "more than 256 aliases"),
    ],
)
def test_recipes_are_read_within_bounds(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_yaml_mapping(p)


def test_a_few_anchors_still_work(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("base: &crop [64, 64]\ndata:\n  crop_size: *crop\n  eval_size: *crop\n")
    assert read_yaml_mapping(p)["data"] == {"crop_size": [64, 64], "eval_size": [64, 64]}
