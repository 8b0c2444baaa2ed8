"""What a data folder holds, before any training: ``edgeseg data check DIR``.

Reads the folder the way training will (:func:`edgeseg.data.data_info` for the classes,
:func:`edgeseg.data.build_dataset` for each split), decodes every pair once and reports
the pairs per split, the image sizes, each class's share of the labelled pixels, the void
share, and every pair that would stop a training (unreadable files, size mismatches, ids
or colours outside the classes), instead of stopping at the first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data import build_dataset, data_info
from edgeseg.data.class_files import read_class_file
from edgeseg.errors import DataError

__all__ = ["DataCheck", "check_folder"]

#: Problems listed in full; more are counted.
MAX_PROBLEMS = 20


@dataclass
class DataCheck:
    """The findings on one data folder (``to_dict`` for JSON)."""

    root: str  # the folder
    classes_from: str  # the class file read, or the preset's name
    classes: list[str]  # class names, id order
    ignore_index: int  # the void id
    masks: str  # "ids" or "colours"
    splits: dict[str, int] = field(default_factory=dict)  # split -> pairs
    sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> images of that size
    pixel_share: dict[str, float] = field(default_factory=dict)  # class -> share of labelled
    void_share: float = 0.0  # share of all pixels that are void
    problems: list[str] = field(default_factory=list)  # one line each, up to MAX_PROBLEMS
    problem_count: int = 0  # all problems found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The report as text lines."""
        out = [
            f"{self.root}: classes from {self.classes_from} ({len(self.classes)}, void id "
            f"{self.ignore_index}), masks hold {self.masks}",
            "pairs: " + ", ".join(f"{s} {n}" for s, n in self.splits.items()),
            "image sizes (HxW): "
            + ", ".join(f"{s} x{n}" for s, n in Counter(self.sizes).most_common(5)),
            f"void: {100 * self.void_share:.1f} % of pixels",
            "class pixel shares:",
        ]
        for name, share in self.pixel_share.items():
            note = "  <- no pixels" if share == 0 else ""
            out.append(f"  {name:<24} {100 * share:6.2f} %{note}")
        if self.problem_count:
            out.append(f"{self.problem_count} problem(s):")
            out += [f"  {p}" for p in self.problems]
            if self.problem_count > len(self.problems):
                out.append(f"  ... and {self.problem_count - len(self.problems)} more")
        else:
            out.append("no problems: every pair reads as training will read it")
        return out


def check_folder(
    root: str | Path, splits: tuple[str, ...] = ("train", "val"), preset: str = "camvid"
) -> DataCheck:
    """Check ``root`` as training would read it (see the module docstring).

    Raises:
        DataError: when no split can be read at all (no layout, a malformed class file).
    """
    root = Path(root)
    info = data_info(root, preset)
    cf = read_class_file(root) if root.is_dir() else None
    report = DataCheck(
        root=str(root),
        classes_from=cf.path.name if cf else f"the {info.name} preset",
        classes=list(info.classes),
        ignore_index=info.ignore_index,
        masks="colours" if info.color_map else "ids",
    )
    counts = np.zeros(info.num_classes, np.int64)
    void = total = 0
    for split in splits:
        try:
            ds = build_dataset(root, split, info)
        except DataError as e:
            if split == splits[0]:
                raise
            report.splits[split] = 0
            _problem(report, str(e))
            continue
        report.splits[split] = len(ds)
        for i in range(len(ds)):
            try:
                image, label = ds.load_pair(i)
            except DataError as e:
                _problem(report, str(e))
                continue
            key = f"{image.shape[0]}x{image.shape[1]}"
            report.sizes[key] = report.sizes.get(key, 0) + 1
            lab = label.astype(np.int64).ravel()
            valid = lab != info.ignore_index
            counts += np.bincount(lab[valid], minlength=info.num_classes)[: info.num_classes]
            void += int((~valid).sum())
            total += lab.size
    labelled = max(int(counts.sum()), 1)
    report.pixel_share = {n: float(c) / labelled for n, c in zip(info.classes, counts, strict=True)}
    report.void_share = void / max(total, 1)
    return report


def _problem(report: DataCheck, line: str) -> None:
    report.problem_count += 1
    if len(report.problems) < MAX_PROBLEMS:
        report.problems.append(line)
