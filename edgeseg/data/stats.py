"""Class frequency statistics, computed once per dataset split and cached on disk.

The cache lives in ``$EDGESEG_CACHE_DIR`` (default ``~/.cache/edgeseg``), never in the data
root, which may be read-only or shared. Its key covers the dataset type, its files (paths,
sizes and modification times) and its preset, so editing a label file invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.dataset import SegmentationDataset
from edgeseg.losses import log_frequency_weights
from edgeseg.utils import atomic_write_json

__all__ = ["cache_dir", "class_frequencies", "class_weights"]

log = logging.getLogger(__name__)

WEIGHTINGS = {"none": None, "enet": 1.02, "thesis": 1.10}


def cache_dir() -> Path:
    """Where edgeseg caches derived data (``$EDGESEG_CACHE_DIR`` or ``~/.cache/edgeseg``)."""
    env = os.environ.get("EDGESEG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgeseg"


def _fingerprint(ds: SegmentationDataset) -> str:
    h = hashlib.sha1()
    h.update(type(ds).__name__.encode())
    h.update(json.dumps(ds.info.to_dict(), sort_keys=True).encode())
    for img, lbl in ds.samples:
        src = lbl if isinstance(lbl, (str, Path)) else lbl[-1]  # COCO: the annotation file
        for p in (Path(img), Path(src)):
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def class_frequencies(ds: SegmentationDataset, *, use_cache: bool = True) -> dict[str, Any]:
    """Pixel counts per class over every label of ``ds`` (void excluded, no augmentation).

    Returns:
        ``{"counts": [K ints], "frequencies": [K floats summing to 1], "pixels": int,
        "void_pixels": int, "num_images": int}``.
    """
    key = _fingerprint(ds)
    path = cache_dir() / "class_stats" / f"{key}.json"
    if use_cache and path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            log.warning("ignoring unreadable cache file %s", path)
    k, void = ds.info.num_classes, ds.info.ignore_index
    counts = np.zeros(k, dtype=np.int64)
    void_px = 0
    for i in range(len(ds)):
        _, label = ds.load_pair(i)
        flat = label.reshape(-1)
        keep = flat != void
        void_px += int((~keep).sum())
        counts += np.bincount(flat[keep].astype(np.int64), minlength=k)[:k]
    total = int(counts.sum())
    stats = {
        "counts": counts.tolist(),
        "frequencies": (counts / max(total, 1)).tolist(),
        "pixels": total,
        "void_pixels": void_px,
        "num_images": len(ds),
    }
    if use_cache:
        try:
            atomic_write_json(path, stats)
        except OSError as e:  # a read-only home must not stop training
            log.warning("cannot cache class statistics in %s: %s", path, e)
    return stats


def class_weights(ds: SegmentationDataset, weighting: str) -> np.ndarray | None:
    """Per-class loss weights ``1 / ln(c + p_c)``: ``"enet"`` (c=1.02), ``"thesis"`` (1.10).

    Returns None for ``"none"``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown class weighting {weighting!r}; use one of {list(WEIGHTINGS)}")
    c = WEIGHTINGS[weighting]
    if c is None:
        return None
    return log_frequency_weights(class_frequencies(ds)["frequencies"], c=c)
