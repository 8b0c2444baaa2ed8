"""What a run writes as it goes: ``log.jsonl`` (and TensorBoard when installed), the
progress bar."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from edgeseg.utils import atomic_write_text

__all__ = ["RunLog", "progress_bar", "progress_write"]

log = logging.getLogger(__name__)


class RunLog:
    """JSONL log (and TensorBoard when installed) written by rank 0 only.

    Args:
        run_dir: the run directory (``log.jsonl`` inside).
        enabled: whether this process writes (rank 0).
        tensorboard: also write TensorBoard events under ``run_dir/tb``.
        keep_epochs: on a resume, rows of epochs after this one are dropped (redone).
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, keep_epochs: int) -> None:
        self.path = run_dir / "log.jsonl"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # a resume: keep the rows of the epochs that are done
            # rows that do not parse (a torn or foreign line) are dropped, the rest kept
            for line in self.path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, RecursionError):
                    row = json.loads(line)
                    if isinstance(row, dict) and _epoch(row) <= keep_epochs:
                        self.rows.append(row)
        if enabled:
            self._flush()
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            except ImportError:  # optional: tensorboard not installed
                log.info("tensorboard is not installed; logging to log.jsonl only")

    def _flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        self._flush()
        if self.tb is not None:
            ep = row["epoch"]
            self.tb.add_scalar("train/loss", row["train_loss"], ep)
            self.tb.add_scalar("train/lr", row["lr"], ep)
            self.tb.add_scalar("train/images_per_s", row["images_per_s"], ep)
            for key in ("miou", "pixel_acc", "mean_acc"):
                if row.get(f"val_{key}") is not None:
                    self.tb.add_scalar(f"val/{key}", row[f"val_{key}"], ep)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _epoch(row: dict[str, Any]) -> float:
    """A row's epoch (rows without a numeric one count as epoch 0)."""
    e = row.get("epoch", 0)
    return e if isinstance(e, (int, float)) else 0


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over an epoch's batches, or ``None`` when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True)


def progress_write(line: str) -> None:
    """Print ``line`` above the progress bars (the epoch's loss and val mIoU)."""
    from tqdm.auto import tqdm

    tqdm.write(line)
