"""Evaluation: one confusion matrix over a split (void excluded) and every paper metric.

Classes absent from both the ground truth and the predictions of the whole split have an
undefined IoU (reported as null) and are left out of the mean IoU, rather than scored 1.0
as SegFast's code does, which inflates mIoU.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from edgeseg.data import DatasetInfo, SegmentationDataset, build_dataset, get_preset
from edgeseg.data.transforms import eval_transform
from edgeseg.engine.checkpoint import load_model
from edgeseg.engine.distributed import DistContext, shard
from edgeseg.errors import EdgesegError
from edgeseg.metrics import batch_statistics, confusion_matrix, segmentation_metrics
from edgeseg.utils import VersionedResult, text_table

__all__ = ["EVAL_SCHEMA", "EvalResult", "confusion_over", "evaluate", "predict_logits"]

log = logging.getLogger(__name__)

PAPER_BATCH = 8  # Squeeze U-Net's Table 7: metrics per batch of 8 images


def _collate(
    items: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # Images of a split may differ in size: keep them as a list, stacked later per size.
    return items


def predict_logits(
    model: nn.Module, x: torch.Tensor, *, channels_last: bool = True, bf16: bool = False
) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` in float32 for a normalised batch ``(B, 3, H, W)``."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with ctx:
        out = model(x)
    return out.float()


@torch.inference_mode()
def confusion_over(
    model: nn.Module,
    dataset: SegmentationDataset,
    *,
    batch_size: int = 8,
    ctx: DistContext | None = None,
    channels_last: bool = True,
    bf16: bool = False,
    per_batch: int | None = None,
    num_workers: int = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Confusion matrix of ``model`` over ``dataset`` (summed over ranks when distributed).

    Args:
        model: a segmentation model (switched to eval mode here).
        dataset: the split, without random augmentation.
        batch_size: images per forward pass.
        ctx: distributed context; each rank takes a disjoint shard and the matrices are
            summed.
        channels_last: run in NHWC.
        bf16: bfloat16 autocast.
        per_batch: also return one matrix per consecutive group of this many images
            (the Squeeze U-Net protocol); single process only.
        num_workers: DataLoader workers.

    Returns:
        ``(cm, batch_cms)``: ``(K, K)`` int64 counts, and the per-group matrices.
    """
    ctx = ctx or DistContext()
    if per_batch and ctx.enabled:
        raise EdgesegError("the per-batch protocol runs in a single process")
    k, void = dataset.info.num_classes, dataset.info.ignore_index
    was_training = model.training
    model.eval()
    indices = shard(len(dataset), ctx)
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=per_batch or batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    cm = np.zeros((k, k), dtype=np.int64)
    groups: list[np.ndarray] = []
    for items in loader:
        group = np.zeros((k, k), dtype=np.int64)
        by_size: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for x, y in items:
            by_size.setdefault(tuple(x.shape), []).append((x, y))
        for same in by_size.values():
            x = torch.stack([a for a, _ in same])
            y = torch.stack([b for _, b in same])
            pred = predict_logits(model, x, channels_last=channels_last, bf16=bf16).argmax(1)
            group += confusion_matrix(pred, y, k, ignore_index=void)
        cm += group
        groups.append(group)
    model.train(was_training)
    total = torch.from_numpy(cm)
    ctx.all_reduce_sum(total)
    return total.numpy(), groups


def _sizes(dataset: SegmentationDataset) -> list[int] | None:
    # The evaluated size, when every image has the same one (cheap: first and last).
    first = dataset[0][1].shape
    last = dataset[len(dataset) - 1][1].shape
    return list(first) if first == last else None


def _model_and_info(
    source: nn.Module | str | Path, info: DatasetInfo | str | None
) -> tuple[nn.Module, DatasetInfo, str, str | None]:
    """``(model, dataset info, model name, checkpoint path or None)``; refuses a model
    whose class count is not the data's."""
    ckpt_path = None
    if isinstance(source, nn.Module):
        model = source
        if info is None:
            raise EdgesegError("evaluate(model, ...) needs info= (a preset or DatasetInfo)")
        name = getattr(model, "edgeseg_config", {}).get("name", type(model).__name__)
    else:
        model, ckpt = load_model(source)
        ckpt_path = ckpt["path"]
        name = ckpt["model"]["name"]
        if info is None:
            info = DatasetInfo.from_dict(ckpt["dataset"])
    if isinstance(info, str):
        info = get_preset(info)
    # The data say what the labels mean; the network says how its input was normalised
    # in training (an ImageNet encoder's [-1, 1], not the preset's): scored as deployed.
    if ckpt_path is not None:
        trained = ckpt["dataset"]
        info = dataclasses.replace(info, mean=tuple(trained["mean"]), std=tuple(trained["std"]))
    elif hasattr(model, "input_mean"):
        mean, std = getattr(model, "input_mean"), getattr(model, "input_std")  # noqa: B009
        info = dataclasses.replace(info, mean=mean, std=std)
    num_classes = getattr(model, "edgeseg_config", {}).get("num_classes")
    if num_classes is not None and num_classes != info.num_classes:
        raise EdgesegError(
            f"the model predicts {num_classes} classes, the {info.name} data has {info.num_classes}"
        )
    return model, info, name, ckpt_path


#: Version of :class:`EvalResult`'s fields (``schema``); a result without one is version 1.
EVAL_SCHEMA = "edgeseg.eval/1"


class EvalResult(VersionedResult):
    """What :func:`evaluate` returns: the JSON-ready metrics dict (``res["miou"]`` as
    before), typed accessors, and the one :meth:`table` the CLI prints.

    Keys: ``schema``, ``miou``, ``pixel_acc``, ``mean_acc``, ``iou`` ``{class: v}``,
    ``tp_rate``, ``fp_tp``, ``num_images``, ``input_size``, ``split``, ``model``,
    ``checkpoint``, ``confusion_matrix`` and, with the paper protocol, ``batches``.
    """

    SCHEMA, KIND = EVAL_SCHEMA, "eval result"

    @property
    def miou(self) -> float:
        """Mean IoU over the classes present (a fraction)."""
        return float(self["miou"])

    @property
    def iou(self) -> dict[str, float | None]:
        """IoU per class name."""
        return dict(self["iou"])

    def table(self) -> str:
        """The head line and per-class table ``edgeseg eval`` prints (and the batch
        statistics of the paper protocol)."""
        res = self

        def pct(v: float | None) -> str:  # metrics are fractions everywhere, as in training
            return "-" if v is None else f"{v:.4f}"

        head = (
            f"{res['model']} on {res['split']} ({res['num_images']} images): "
            f"mIoU {pct(res['miou'])}, pixel acc {pct(res['pixel_acc'])}, "
            f"mean acc {pct(res['mean_acc'])}"
        )
        rows: list[Any] = [
            (
                name,
                pct(res["iou"][name]),
                pct(res["tp_rate"][name]),
                "-" if res["fp_tp"][name] is None else f"{res['fp_tp'][name]:.3f}",
            )
            for name in res["iou"]
        ]
        text = head + "\n" + text_table(rows, ("class", "IoU", "TP rate", "FP/TP"))
        if "batches" in res:
            b = res["batches"]
            rows = []
            for name in res["iou"]:
                cells = [name]
                for metric in ("tp_rate", "iou", "fp_tp"):
                    s = b[metric][name]
                    cells.append(
                        "-"
                        if s["mean"] is None
                        else f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"
                    )
                rows.append(cells)
            text += (
                f"\n\nper batch of {b['batch_size']} ({b['count']} batches): mean [min, max]\n"
                + text_table(rows, ("class", "TP rate", "IoU", "FP/TP"))
            )
        return text


def evaluate(
    model_or_checkpoint: nn.Module | str | Path,
    data_root: str | Path,
    split: str = "val",
    *,
    info: DatasetInfo | str | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    paper_protocol: bool = False,
    threads: int | None = None,
    channels_last: bool = True,
) -> EvalResult:
    """Evaluate a model or a checkpoint on a data split.

    Args:
        model_or_checkpoint: a model, a checkpoint file or a run directory.
        data_root: data root of the split.
        split: split name.
        info: dataset preset (name or :class:`DatasetInfo`); default: the checkpoint's.
        input_size: resize images (bilinear) and labels (nearest) to HxW; default native.
        batch_size: images per forward pass.
        paper_protocol: add the Squeeze U-Net paper's statistics over batches of 8
            (mean/max/min of TP rate, IoU and FP/TP per class, its Table 7) under
            ``"batches"``.
        threads: intra-op threads (default: torch's).
        channels_last: run in NHWC.

    Returns:
        An :class:`EvalResult`: ``{"miou", "pixel_acc", "mean_acc", "iou": {class: v},
        "tp_rate": {}, "fp_tp": {}, "num_images", "input_size", "split", "model",
        "checkpoint", "confusion_matrix"}`` plus ``"batches"`` with the paper protocol.
    """
    model, info, name, ckpt_path = _model_and_info(model_or_checkpoint, info)
    ds = build_dataset(data_root, split, info, transform=eval_transform(input_size))
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        cm, groups = confusion_over(
            model,
            ds,
            batch_size=batch_size,
            channels_last=channels_last,
            per_batch=PAPER_BATCH if paper_protocol else None,
        )
    finally:
        torch.set_num_threads(old_threads)
    out = EvalResult(schema=EVAL_SCHEMA, **segmentation_metrics(cm, info.classes))
    out.update(
        num_images=len(ds),
        input_size=list(input_size) if input_size else _sizes(ds),
        split=split,
        model=name,
        checkpoint=ckpt_path,
        confusion_matrix=cm.tolist(),
    )
    if paper_protocol:
        out["batches"] = {"batch_size": PAPER_BATCH, "count": len(groups)}
        out["batches"].update(batch_statistics(groups, info.classes))
    return out
