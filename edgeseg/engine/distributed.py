"""PyTorch's own distributed engine, as torchrun sets it up.

``torchrun --nproc_per_node=N -m edgeseg train ...`` exports ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init_distributed` joins the process group
(gloo on CPU, nccl when CUDA is available). Without those variables everything runs in one
process and these helpers are no-ops.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["DistContext", "ResumableSampler", "init_distributed"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine
    backend: str | None = None  # "gloo" | "nccl" | None (single process)

    @property
    def enabled(self) -> bool:
        """True when running under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress."""
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks (in place) and return it."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.enabled:
            dist.barrier()


def init_distributed() -> DistContext:
    """Join the torchrun process group if there is one (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        # A group left to the interpreter's teardown can abort the process ("terminate
        # called without an active exception": gloo's threads destroyed while joinable),
        # turning a finished run into a failed torchrun job. Destroy the group we created
        # before that teardown; a group the caller created is the caller's to destroy.
        atexit.register(_destroy_group)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=backend,
    )


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way through an epoch.

    The order of an epoch depends only on ``(seed, epoch)``, so skipping the first
    ``start`` batches' indices after a resume gives exactly the rest of the interrupted
    epoch. Works in a single process too (``num_replicas=1, rank=0``).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_replicas: int,
        rank: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's next epoch."""
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


def shard(n: int, ctx: DistContext) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``n`` items: disjoint, no padding (evaluation)."""
    return list(range(ctx.rank, n, ctx.world_size))
