"""A real two-node Ray cluster on loopback for the tests: a head and a second node started
with ``ray start`` (one CPU each), the second one killable mid-run."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# 127.0.0.2 is loopback too, and Ray does not rewrite it to the machine's public address
# (it does so for 127.0.0.1 and localhost): every byte stays on this machine.
IP = "127.0.0.2"
# Token authentication, as Ray recommends: every process of the test (nodes, drivers) gets
# this run's token and nothing else can join.
ENV = {
    **os.environ,
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}


# The `ray` command of this interpreter's environment (PATH may hold another, or none).
_HERE = Path(sys.executable).with_name("ray")
RAY = str(_HERE) if _HERE.exists() else "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((IP, 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray puts its node's processes in sessions of their own,
    so a process group does not reach them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


class LocalCluster:
    """``ray start --head`` plus ``ray start --address ... --block`` (the second node;
    ``nodes=1``: the head alone)."""

    def __init__(self, cpus_per_node: int = 1, nodes: int = 2) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
        self.address = f"{IP}:{_free_port()}"
        common = ["--node-ip-address", IP, "--num-cpus", str(cpus_per_node)]
        subprocess.run(
            [
                RAY,
                "start",
                "--head",
                "--port",
                self.address.split(":")[1],
                *common,
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--temp-dir",
                str(self.temp),
            ],
            check=True,
            capture_output=True,
            env=ENV,
            timeout=120,
        )
        self.node: subprocess.Popen[bytes] | None = None
        try:
            if nodes == 2:
                self._start_second(common)
        except BaseException:
            self.stop()
            raise

    def _start_second(self, common: list[str]) -> None:
        self.node = subprocess.Popen(
            [RAY, "start", "--address", self.address, *common, "--block"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        self._wait_nodes(2)

    def _wait_nodes(self, n: int, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = subprocess.run(
                [RAY, "status", "--address", self.address],
                capture_output=True,
                text=True,
                env=ENV,
            )
            if r.stdout.count("node_") >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster at {self.address} did not reach {n} nodes")

    def kill_second_node(self) -> None:
        """SIGKILL the second node's processes (``ray start`` and everything under it:
        its raylet, object store, workers) at once, as a machine that is switched off."""
        if self.node is None or self.node.poll() is not None:
            return
        for pid in [self.node.pid, *_descendants(self.node.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.node.wait(timeout=30)

    def stop(self) -> None:
        """End every process of this cluster (and only of this one)."""
        self.kill_second_node()
        subprocess.run(["pkill", "-KILL", "-f", str(self.temp)], check=False)
        subprocess.run(["pkill", "-KILL", "-f", self.address], check=False)


def local_cluster() -> LocalCluster:
    """A started cluster, or a skip where Ray is not installed."""
    pytest.importorskip("ray")
    return LocalCluster()
