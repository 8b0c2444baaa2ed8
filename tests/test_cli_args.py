"""CLI flags generated from the API's signatures and docstrings."""

from __future__ import annotations

import argparse

import pytest

from edgeseg.cli_args import api_flag, param_docs
from edgeseg.engine.evaluate import evaluate
from edgeseg.measure.bench import bench
from edgeseg.workflows.compress import compress_checkpoint


def _f(a: int, b: tuple[int, int] = (360, 480), c: bool = False) -> None:
    """Example.

    Args:
        a: the first, on
            two lines (:class:`~edgeseg.config.Config`).
        b: a size.
        c: a switch.

    Returns:
        Nothing.
    """


def test_param_docs_reads_the_args_section() -> None:
    docs = param_docs(_f)
    assert docs == {
        "a": "the first, on two lines (edgeseg.config.Config).",
        "b": "a size.",
        "c": "a switch.",
    }


def test_api_flag_takes_default_and_help_from_the_function() -> None:
    p = argparse.ArgumentParser()
    api_flag(p, _f, "b")
    api_flag(p, _f, "c", action="store_true")
    (b, c) = p._actions[1:]
    assert b.default == (360, 480) and b.help == "a size; default 360x480"
    assert c.default is False and c.help == "a switch."
    with pytest.raises(KeyError):
        api_flag(p, _f, "nope")


def test_eval_and_compress_flags_say_what_the_api_says() -> None:
    from edgeseg.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, api, dests in (
        ("compress", compress_checkpoint, {"ratio": "ratio", "round_to": "round_to"}),
        ("eval", evaluate, {"batch_size": "batch_size", "data": "data_root"}),
        ("bench", bench, {"warmup": "warmup", "accuracy_budget": "budget_miou", "keep": "workdir"}),
    ):
        actions = {a.dest: a for a in sub.choices[command]._actions}
        docs = param_docs(api)
        for dest, param in dests.items():
            assert actions[dest].help.startswith(docs[param].rstrip(".")), (command, dest)
