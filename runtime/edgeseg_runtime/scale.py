"""Past one machine with Ray: connect to a cluster, and segment millions of images with a
pool of inference actors (Ray Data), resumably.

    edgeseg-run predict BUNDLE /archive --out labels/ --ray auto --actors 8 --threads 2

Every actor holds one inference session (ONNX Runtime or OpenVINO, ``threads`` intra-op
threads, that many CPUs reserved); Ray Data feeds it batches of file paths, so images are
read lazily by the actor that segments them and the driver holds only the list of paths.
Outputs are written atomically (a temporary file, then a rename), the label PNG last: a
label file that exists is a finished image, and a re-run skips it. Ray is an optional
extra (``pip install 'edgeseg-runtime[ray]'``); nothing here imports it at module load.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.files import atomic_write_bytes, collect_images, write_prediction

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DRIVER_LOG",
    "RAY_EXTRA",
    "SUMMARY_FILE",
    "gather_images",
    "import_ray",
    "native_stderr_to",
    "ray_predict",
    "ray_session",
    "summary_line",
]

log = logging.getLogger(__name__)

#: The pip extra that brings Ray in, named by every refusal of ``--ray`` without it.
RAY_EXTRA = "pip install 'edgeseg-runtime[ray]'"
#: How long an address may take to accept a connection before it is called unreachable.
CONNECT_TIMEOUT_S = 5.0
#: ``OUT/predict_summary.json``: throughput, latency and failures of a batch prediction.
SUMMARY_FILE = "predict_summary.json"
#: ``OUT/ray_driver.log``: Ray's native notices of the driver process (kept off the terminal).
DRIVER_LOG = "ray_driver.log"
#: Loopback address of a Ray started by ``--ray local``: the job stays on this machine.
_LOCAL_IP = "127.0.0.1"
_GLOB_CHARS = "*?["


def import_ray(extra: str = RAY_EXTRA) -> Any:
    """The ``ray`` module, or one line naming the extra that installs it.

    Raises:
        EdgesegError: Ray (with Ray Data) is not installed.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise EdgesegError(f"--ray needs Ray, an optional extra: {extra}") from None
    return ray


#: An HTTP/2 client preface and an empty SETTINGS frame: a Ray head (its GCS is a gRPC
#: server) answers with a SETTINGS frame at once; anything else is not a Ray head.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def _probe(address: str, timeout: float) -> None:
    """Refuse, within about ``timeout`` seconds, a ``HOST:PORT`` where no Ray head answers.

    Ray's own connection retries for minutes against a port that accepts and stays
    silent, so the head is greeted first the way its gRPC server expects."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EdgesegError(f"--ray {address}: expected local, auto or HOST:PORT of a Ray head")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(_H2_HELLO)
            head = s.recv(9)
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise EdgesegError(
            f"--ray {address}: no Ray head answers there ({reason}); start one with "
            "`ray start --head` or check the address"
        ) from None
    if len(head) < 4 or head[3] != _H2_SETTINGS:
        raise EdgesegError(f"--ray {address}: something answers there, but not a Ray head")


@contextmanager
def ray_session(address: str, *, extra: str = RAY_EXTRA) -> Iterator[Any]:
    """Connect to a Ray cluster for the length of a ``with`` block; yields ``ray``.

    Args:
        address: ``local`` (start a one-machine Ray here, on loopback), ``auto`` (the
            cluster this machine is a node of) or ``HOST:PORT`` of a head node.
        extra: the pip extra named when Ray is missing.

    Raises:
        EdgesegError: Ray missing, a malformed address, or nothing answering there within
            :data:`CONNECT_TIMEOUT_S` seconds.
    """
    ray = import_ray(extra)
    # Ray's notices (token mode, progress-bar settings) would break the one-line contract
    # of a command; its errors still show.
    logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():  # a caller that connected already keeps its connection
        yield ray
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address == "local":
        kwargs["_node_ip_address"] = _LOCAL_IP
    elif address == "auto":
        kwargs["address"] = "auto"
    else:
        _probe(address, CONNECT_TIMEOUT_S)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"--ray {address}: cannot connect: {first}") from None
    # The driver prints the cluster's events (a node lost, a worker killed) to stdout from
    # a thread of its own: they go to stderr, so a command's stdout stays its JSON.
    try:
        with redirect_stdout(sys.stderr):
            yield ray
    finally:
        ray.shutdown()


@contextmanager
def native_stderr_to(path: str | Path) -> Iterator[None]:
    """Send what native code writes to this process's stderr (Ray's C++ core logs its
    notices there) to ``path`` for the block, keeping Python's ``sys.stderr`` on the
    terminal: a command's own output stays one line per outcome."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    old = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = old


def gather_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Every image of the inputs: files, folders (their images), list files (``.txt``, a
    path per line, relative to the list's folder) and glob patterns (``/scans/**/*.png``).

    Raises:
        EdgesegError: a missing path, a pattern or list that names no image, or two
            images of one stem (their outputs would be one file).
    """
    expanded: list[str | Path] = []
    for item in inputs:
        text = str(item)
        if any(c in text for c in _GLOB_CHARS) and not Path(text).exists():
            found = sorted(glob.iglob(text, recursive=True))
            if not found:
                raise EdgesegError(f"no file matches the pattern {text}")
            expanded += found
        elif text.endswith(".txt") and Path(text).is_file():
            base = Path(text).parent
            lines = Path(text).read_text(encoding="utf-8").splitlines()
            paths = [base / ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
            if not paths:
                raise EdgesegError(f"{text}: the list names no image")
            expanded += paths
        else:
            expanded.append(item)
    return collect_images(expanded)


class _PredictActor:
    """One inference session in a Ray actor: segments a batch of paths, writes each
    image's outputs, returns a row per image (never raises for one bad image)."""

    def __init__(self, factory: Callable[[], Any], out: str, options: dict[str, Any]) -> None:
        self.seg = factory()
        self.out = Path(out)
        self.opt = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self._one(Path(str(p))) for p in batch["path"]]
        status, ms, errors = zip(*rows, strict=True) if rows else ((), (), ())
        return {
            "path": batch["path"],
            "status": np.array(status, dtype=str),
            "ms": np.array(ms, dtype=float),
            "error": np.array(errors, dtype=str),
        }

    def _one(self, p: Path) -> tuple[str, float, str]:
        """``(status, network ms, error)`` of one image: skipped, written or failed."""
        from edgeseg_runtime.processing import read_image

        if not self.opt["overwrite"] and (self.out / "labels" / f"{p.stem}.png").is_file():
            return "skipped", float("nan"), ""
        try:
            rgb = read_image(p)
            t0 = time.perf_counter()
            labels = self.seg(rgb)
            ms = (time.perf_counter() - t0) * 1000
            write_prediction(
                self.out,
                p.stem,
                rgb,
                labels,
                self.seg.classes,
                self.seg.palette,
                alpha=self.opt["alpha"],
                legend=self.opt["legend"],
                overlays=self.opt["overlays"],
            )
        except (EdgesegError, OSError) as e:  # one bad file fails alone, named
            return "failed", float("nan"), str(e)
        return "written", ms, ""


def _bound_actor(factory: Callable[[], Any], out: str, options: dict[str, Any]) -> type:
    """:class:`_PredictActor` with its arguments bound into the class: it travels pickled
    with the task, so no constructor argument has to live in the object store (Ray warns
    that an actor restarted after the loss of such an argument cannot be rebuilt)."""

    class _Bound(_PredictActor):
        def __init__(self) -> None:
            super().__init__(factory, out, options)

    return _Bound


def _progress(total: int) -> Any:
    """A progress bar on stderr (tqdm, part of the extra), or a stand-in without one."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the extra
        return None
    return tqdm(total=total, unit="img", desc="segmenting", mininterval=1.0)


def ray_predict(
    factory: Callable[[], Any],
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    address: str,
    actors: int = 2,
    threads: int = 1,
    batch_size: int = 8,
    alpha: float = 0.5,
    legend: bool = False,
    overlays: bool = True,
    overwrite: bool = False,
    extra: str = RAY_EXTRA,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment every input image on a Ray cluster; skip images already done in ``out``.

    Args:
        factory: builds one segmenter (called once in each actor): a callable returning
            an object with ``__call__(rgb) -> labels``, ``classes`` and ``palette`` (both
            packages' ``Segmenter``); it must pickle (a ``functools.partial`` does).
        inputs: files, folders, ``.txt`` lists and glob patterns (:func:`gather_images`).
        out: output folder (``labels/``, ``overlays/``, :data:`SUMMARY_FILE`, and Ray's
            native notices of this driver in :data:`DRIVER_LOG`); every node must see it
            at the same path (a shared file system on a real cluster).
        address: the Ray cluster (:func:`ray_session`).
        actors: inference sessions running at once (the actor pool's size).
        threads: intra-op threads of each session; that many CPUs reserved per actor.
        batch_size: paths handed to an actor at a time.
        alpha, legend: overlay opacity and class key, as ``predict``.
        overlays: also write ``overlays/STEM.png`` (off: label maps only, for archives).
        overwrite: segment images whose labels exist (else they are skipped: a re-run of
            an interrupted job resumes).
        extra: the pip extra named when Ray is missing.
        progress: draw a progress bar on stderr.

    Returns:
        The summary written to ``OUT/predict_summary.json``: counts (written, skipped,
        failed with reasons), wall seconds, images/s, per-image network latency, the pool.
    """
    if actors < 1 or threads < 1 or batch_size < 1:
        raise EdgesegError("--actors, --threads and the batch size must be positive")
    files = gather_images(inputs)  # every input checked before Ray starts
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {"alpha": alpha, "legend": legend, "overlays": overlays, "overwrite": overwrite}
    with native_stderr_to(out / DRIVER_LOG), ray_session(address, extra=extra) as ray:
        t0 = time.perf_counter()
        rows = _run_pool(ray, factory, files, out, options, actors, threads, batch_size, progress)
        seconds = time.perf_counter() - t0
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    summary = _summarise(rows, seconds, actors, threads, len(nodes))
    atomic_write_bytes(out / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    summary["rows"] = rows
    return summary


def _run_pool(
    ray: Any,
    factory: Callable[[], Any],
    files: list[Path],
    out: Path,
    options: dict[str, Any],
    actors: int,
    threads: int,
    batch_size: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Run the actor pool over the paths; a row per image as the batches come back."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images, not blocks
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ds = ray.data.from_items([{"path": str(f)} for f in files])
    ds = ds.map_batches(
        _bound_actor(factory, str(out), options),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )
    bar = _progress(len(files)) if progress else None
    rows: list[dict[str, Any]] = []
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for p, s, ms, err in zip(
                batch["path"], batch["status"], batch["ms"], batch["error"], strict=True
            ):
                row: dict[str, Any] = {"image": str(p), "status": str(s)}
                if s == "written":
                    row["latency_ms"] = float(ms)
                elif s == "failed":
                    row["error"] = str(err)
                rows.append(row)
            if bar is not None:
                bar.update(len(batch["path"]))
    finally:
        if bar is not None:
            bar.close()
    return rows


def _summarise(
    rows: list[dict[str, Any]], seconds: float, actors: int, threads: int, nodes: int
) -> dict[str, Any]:
    """Counts, throughput and latency of a batch prediction (the summary file's body)."""
    by = {k: [r for r in rows if r["status"] == k] for k in ("written", "skipped", "failed")}
    ms = sorted(r["latency_ms"] for r in by["written"])
    latency = {}
    if ms:
        latency = {
            "median": round(statistics.median(ms), 2),
            "p90": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 2),
            "mean": round(statistics.fmean(ms), 2),
        }
    return {
        "images": len(rows),
        "written": len(by["written"]),
        "skipped": len(by["skipped"]),
        "failed": len(by["failed"]),
        "failures": [{"image": r["image"], "error": r["error"]} for r in by["failed"][:100]],
        "seconds": round(seconds, 2),
        "images_per_s": round(len(by["written"]) / seconds, 2) if seconds > 0 else None,
        "latency_ms": latency,
        "actors": actors,
        "threads_per_actor": threads,
        "nodes": nodes,
        "driver": platform.node(),
    }


def summary_line(res: dict[str, Any], out: str | Path) -> str:
    """The one-line outcome of :func:`ray_predict` for a terminal.

    Raises:
        EdgesegError: some images failed: how many, the first with its reason, and where
            the list is (the others are written).
    """
    summary = Path(out) / SUMMARY_FILE
    if res["failed"]:
        first = res["failures"][0]
        raise EdgesegError(
            f"{res['failed']} of {res['images']} image(s) failed (e.g. {first['image']}: "
            f"{first['error']}); the others are written, the list is in {summary}"
        )
    med = res["latency_ms"].get("median")
    lat = f", network median {med:.1f} ms per image" if med is not None else ""
    return (
        f"segmented {res['written']} image(s), skipped {res['skipped']} already done, on "
        f"{res['actors']} actor(s) x {res['threads_per_actor']} thread(s): "
        f"{res['images_per_s'] or 0.0:.1f} images/s{lat}; summary in {summary}"
    )
