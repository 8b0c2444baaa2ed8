"""The torchrun helpers: single-process no-ops, and the group torn down before exit."""

from __future__ import annotations

import atexit
from typing import Any

import pytest
import torch.distributed as dist

from edgeseg.engine import distributed as D


def test_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = D.init_distributed()
    assert not ctx.enabled and ctx.is_main
    assert ctx.all_gather_object(3) == [3] and ctx.broadcast_object("a") == "a"


def test_group_we_create_is_destroyed_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    # gloo left to the interpreter's teardown can SIGABRT a finished rank
    # (pytorch/pytorch#190489); the group must be destroyed by an atexit handler.
    state: dict[str, Any] = {"init": False, "destroyed": False, "handlers": []}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: state["init"])
    monkeypatch.setattr(dist, "init_process_group", lambda backend: state.update(init=True))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: state.update(destroyed=True))
    monkeypatch.setattr(atexit, "register", lambda fn: state["handlers"].append(fn))
    ctx = D.init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (1, 2, 1, "gloo")
    assert len(state["handlers"]) == 1
    D.init_distributed()  # already initialised: no second handler
    assert len(state["handlers"]) == 1
    state["handlers"][0]()
    assert state["destroyed"]
