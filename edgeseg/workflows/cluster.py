"""``edgeseg compare --ray``: the comparison's models side by side on a Ray cluster.

Each model's ``train`` and ``evaluate`` stages run as one Ray task with ``threads`` CPUs
reserved, on any node; as each one ends, its results are written into ``OUT/results.json``
by the driver (the only writer). Latency is a property of the deployment CPU, not of the
node that trained, so ``profile``, ``bench`` and ``preview`` run on one chosen node (the
driver's unless ``bench_node`` names another), one model at a time, with every CPU of
that node reserved so nothing else runs there meanwhile.

A task lost with its node (or its worker process) is retried elsewhere up to
:data:`RETRIES` times; training resumes from the run's ``last.pt``. A model that still
fails is recorded with the reason, and the others finish. The output folder and the data
must be at the same paths on every node (a shared file system, as Ray Tune asks of
multi-node runs). Running the same command again after a crash of the driver skips the
finished models, as without Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from edgeseg.errors import EdgesegError

__all__ = ["ANYWHERE", "ON_BENCH_NODE", "RAY_EXTRA", "RETRIES", "bench_node_of", "run_on_ray"]

log = logging.getLogger(__name__)

#: The pip extra that brings Ray in.
RAY_EXTRA = "pip install 'edgeseg[ray]'"
#: Stages that may run on any node (their results do not depend on the CPU).
ANYWHERE = ("train", "evaluate")
#: Stages that measure the deployment CPU: on the bench node, one model at a time.
ON_BENCH_NODE = ("profile", "bench", "preview")
#: Times a task lost with its node or worker is tried again (on any node that has room).
RETRIES = 2


def bench_node_of(ray: Any, wanted: str | None) -> dict[str, Any]:
    """The node that benchmarks: ``{"node_id", "address", "cpus"}``.

    Args:
        ray: the connected ``ray`` module.
        wanted: a node id (or its first characters), a node's IP address, or a custom
            resource that exactly one node has (``ray start --resources '{"bench": 1}'``);
            None: the driver's node.

    Raises:
        EdgesegError: no alive node (or several) matches, naming the nodes there are.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if wanted is None:
        here = ray.get_runtime_context().get_node_id()
        found = [n for n in nodes if n["NodeID"] == here]
    else:
        found = [
            n
            for n in nodes
            if n["NodeID"].startswith(wanted)
            or wanted in (n.get("NodeManagerAddress"), n.get("NodeManagerHostname"))
            or wanted in n.get("Resources", {})
        ]
    if len(found) != 1:
        names = ", ".join(f"{n['NodeID'][:12]} ({n.get('NodeManagerAddress')})" for n in nodes)
        what = "no" if not found else f"{len(found)}"
        raise EdgesegError(
            f"--bench-node {wanted or '(the driver)'}: {what} alive node(s) match; the nodes: "
            f"{names}; give a node id"
        )
    n = found[0]
    return {
        "node_id": n["NodeID"],
        "address": n.get("NodeManagerAddress"),
        "cpus": float(n.get("Resources", {}).get("CPU", 0.0)),
    }


def run_on_ray(
    cfg: Any,
    specs: list[tuple[str, str | None]],
    results: Any,
    size: tuple[int, int],
    extra: dict[str, Callable[..., torch.nn.Module]],
    label_kept: Callable[[dict[str, Any], str, str], None],
    task: Callable[..., dict[str, Any]],
    on_model_done: Callable[[], None] | None = None,
) -> None:
    """Run every unfinished model of a comparison on the Ray cluster ``cfg.ray``.

    Args:
        cfg: the comparison (:class:`edgeseg.workflows.compare.CompareConfig`).
        specs: ``[(name, checkpoint or None)]`` in the comparison's order.
        results: the comparison's results file (its ``model(name)``, ``data``, ``save()``).
        size: the profile/bench input size.
        extra: networks outside the zoo (their factories travel to the workers pickled).
        label_kept: how a model finished by an earlier run is logged and labelled.
        task: ``task(cfg, name, checkpoint, entry, stages, size, extra) -> entry``, run
            in a worker: the comparison's stages of one model (a module-level function,
            so workers import it rather than unpickle it).
        on_model_done: called after each model's results are saved (the report so far).

    Raises:
        EdgesegError: Ray missing, the cluster unreachable, the bench node not found.
    """
    from edgeseg_runtime.scale import ray_session

    with ray_session(cfg.ray, extra=RAY_EXTRA) as ray:
        bench = bench_node_of(ray, cfg.bench_node)
        results.data["cluster"] = {
            "address": cfg.ray,
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "bench_node": bench,
        }
        _Driver(ray, cfg, results, size, extra, bench, task, on_model_done).run(specs, label_kept)


class _Driver:
    """The driver's loop: training tasks at once, one bench task at a time."""

    def __init__(
        self,
        ray: Any,
        cfg: Any,
        results: Any,
        size: tuple[int, int],
        extra: dict[str, Callable[..., torch.nn.Module]],
        bench: dict[str, Any],
        task: Callable[..., dict[str, Any]],
        on_model_done: Callable[[], None] | None = None,
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.cfg, self.results, self.size, self.extra = ray, cfg, results, size, extra
        task = ray.remote(task)
        self.train = task.options(num_cpus=cfg.threads, max_retries=RETRIES)
        pin = NodeAffinitySchedulingStrategy(bench["node_id"], soft=False)
        # Every CPU of the bench node: no training shares it while a model is timed.
        self.bench = task.options(
            num_cpus=bench["cpus"], max_retries=RETRIES, scheduling_strategy=pin
        )
        self.pending: dict[Any, tuple[str, str]] = {}
        self.queue: list[str] = []
        self.given: dict[str, str | None] = {}
        self.on_model_done = on_model_done

    def run(
        self,
        specs: list[tuple[str, str | None]],
        label_kept: Callable[[dict[str, Any], str, str], None],
    ) -> None:
        """Submit, collect and record until every model is done or failed."""
        for name, given in specs:
            entry = self.results.model(name)
            self.given[name] = given
            if entry.get("status") == "done":
                label_kept(entry, self.cfg.budgets.get(name, self.cfg.budget), name)
                continue
            entry.pop("error", None)
            entry["status"] = "running"
            self._submit(name, entry)
        self.results.save()
        while self.pending:
            self._next_result()

    def _submit(self, name: str, entry: dict[str, Any]) -> None:
        stages, given = entry["stages"], self.given[name]
        if not all(stages.get(s, {}).get("done") for s in ANYWHERE if s != "train" or not given):
            ref = self.train.remote(self.cfg, name, given, entry, ANYWHERE, self.size, self.extra)
            self.pending[ref] = (name, "train")
            log.info("%s: %s submitted to the cluster", name, " and ".join(ANYWHERE))
        else:
            self.queue.append(name)
            self._bench_next()

    def _bench_next(self) -> None:
        if not self.queue or any(p == "bench" for _, p in self.pending.values()):
            return
        name = self.queue.pop(0)
        entry, given = self.results.model(name), self.given[name]
        ref = self.bench.remote(self.cfg, name, given, entry, ON_BENCH_NODE, self.size, self.extra)
        self.pending[ref] = (name, "bench")
        log.info("%s: benchmark submitted to the bench node", name)

    def _next_result(self) -> None:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        name, phase = self.pending.pop(ready[0])
        try:
            entry = self.ray.get(ready[0])
        except self.ray.exceptions.RayError as e:  # lost node or worker, retries spent
            entry = self.results.model(name)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            entry["status"] = "failed"
            entry["error"] = f"{phase} on the cluster failed after {RETRIES} retries: {reason}"
            log.error("%s: %s", name, entry["error"])
        self.results.data["models"][name] = entry
        if entry.get("status") == "failed":
            self.results.save()
            self._bench_next()
            self._model_done()
            return
        if phase == "train":
            self.queue.append(name)
        else:
            # The latencies are the bench node's: the report names its CPU.
            self.results.data["machine"]["cpu"] = entry["nodes"]["profile"]["cpu"]
            entry["status"] = "done"
            entry["budget"] = self.cfg.budgets.get(name, self.cfg.budget)
            entry.pop("budget_note", None)
            miou = entry.get("metrics", {}).get("miou") or 0.0
            log.info(
                "%s: mIoU %.3f, best backend %s", name, miou, entry.get("bench", {}).get("best")
            )
        self.results.save()
        self._bench_next()
        if phase == "bench":
            self._model_done()

    def _model_done(self) -> None:
        if self.on_model_done is not None:
            self.on_model_done()
