"""Render a comparison's ``results.json`` as ``report.md``, ``report.html`` and figures.

Figures (PNG, matplotlib's Agg backend, written next to the reports):

* ``pareto.png``: mIoU against the best backend's latency, the Pareto front joined (a
  model is on it when no other one is both faster and more accurate);
* ``curves.png``: training loss and validation mIoU per epoch (the Squeeze U-Net paper's
  Figure 3, for every model);
* ``timing.png``: where the time goes: the comparison's own stages per model (train,
  evaluate, ...), and each network's inference time per stage (that paper's Figures 4-5);
* ``predictions.png``: a few validation images, their ground truth and every model's
  prediction;
* ``int8.png``: for each model whose int8 file needed mixed precision, the modules that
  cost most in int8 (mIoU points lost alone in int8, won back alone in fp32), the ones
  deployed in fp32 marked.

``report.html`` embeds the figures (data URIs), so the one file can be mailed or opened
anywhere; ``report.md`` links the PNG files.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

matplotlib.use("Agg")  # files only, never a window
import numpy as np
from PIL import Image

from edgeseg.deploy.mixed import Sensitivity
from edgeseg.utils import atomic_write_bytes, atomic_write_text

__all__ = ["pareto_front", "report_tables", "training_flags", "verdict", "write_report"]

log = logging.getLogger(__name__)

FIGURES = ("pareto", "curves", "timing", "predictions", "int8")
MIN_EPOCHS = 10  # fewer epochs than this: the score says little about the network
RISING = 0.02  # val mIoU gained over the last quarter of training: still learning
# Figures are built with matplotlib's object API (no pyplot): no global backend or state
# is touched in the caller's process.
_COLOURS = matplotlib.colormaps["tab10"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower latency and higher score).

    Args:
        points: ``(latency, score)`` pairs.

    Returns:
        Indices on the front, sorted by latency.
    """
    front = []
    for i, (lat, score) in enumerate(points):
        dominated = any(
            (l2 <= lat and s2 >= score) and (l2 < lat or s2 > score)
            for j, (l2, s2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def training_flags(entry: dict[str, Any]) -> list[str]:
    """Why a model's score may understate it: its training was cut by the budget, was
    short, or had not converged (val mIoU still rising at the end). Empty: none."""
    tr = entry.get("train")
    if not tr:
        return []
    flags = []
    done, planned = tr.get("epochs_done", 0), tr.get("epochs", 0)
    if tr.get("stopped_by_budget") or (planned and done < planned):
        flags.append(f"schedule cut: {done} of {planned} epochs")
    elif done < MIN_EPOCHS:
        flags.append(f"only {done} epoch{'' if done == 1 else 's'}")
    if entry.get("budget_note"):
        flags.append(entry["budget_note"])
    ev = [r["val_miou"] for r in entry.get("history", []) if r.get("val_miou") is not None]
    if len(ev) >= 3:
        head = ev[: max(1, (3 * len(ev)) // 4)]
        gain = ev[-1] - max(head)
        if gain > RISING:
            flags.append(f"still improving (+{gain:.3f} mIoU in the last quarter)")
    return flags


def verdict(results: dict[str, Any]) -> list[str]:
    """The report's opening paragraph, as sentences: which model to pick for accuracy,
    for speed and in between (the Pareto front in words), and which scores not to trust."""
    done = [e for e in _done(results) if e.get("metrics", {}).get("miou") is not None]
    pts = [(e, *_best_latency(e)) for e in done]
    pts = [(e, b, ms) for e, b, ms in pts if ms is not None]
    if not pts:
        return ["No model finished: nothing to recommend yet."]
    front = [pts[i] for i in pareto_front([(ms, e["metrics"]["miou"]) for e, _, ms in pts])]
    fastest, best = front[0], front[-1]

    def say(p: tuple[dict[str, Any], str | None, float]) -> str:
        e, backend, ms = p
        return f"{e['name']} ({e['metrics']['miou']:.3f} mIoU, {ms:.1f} ms with {backend})"

    out = [f"Pick {say(best)} for the best accuracy."]
    if fastest is not best:
        out.append(f"Pick {say(fastest)} when latency comes first.")
        middle = front[1:-1]
        if middle:
            between = "; ".join(say(p) for p in middle)
            out.append(
                "In between, on the Pareto front (no other model is both faster "
                f"and more accurate): {between}."
            )
    else:
        out.append("It is also the fastest: it dominates every other model here.")
    off = [e["name"] for e, _, _ in pts if all(e is not f[0] for f in front)]
    if off:
        out.append(f"Dominated (another model is both faster and more accurate): {', '.join(off)}.")
    failed = [e for e in results.get("models", {}).values() if e.get("status") == "failed"]
    if failed:
        out.append(
            "Not compared (see Failed): "
            + "; ".join(f"{e['name']} ({e.get('error', 'failed')})" for e in failed)
            + "."
        )
    flagged = [(e["name"], training_flags(e)) for e in done]
    flagged = [(n, f) for n, f in flagged if f]
    if flagged:
        out.append(
            "Do not read these scores as the networks' worth, their training was not "
            "complete: "
            + "; ".join(f"{n} ({', '.join(f)})" for n, f in flagged)
            + ". Give them a larger budget before choosing."
        )
    return out


def _done(results: dict[str, Any]) -> list[dict[str, Any]]:
    order = results.get("order") or list(results.get("models", {}))
    models = results.get("models", {})
    return [models[n] for n in order if n in models and models[n].get("status") == "done"]


def _best_latency(entry: dict[str, Any]) -> tuple[str | None, float | None]:
    b = entry.get("bench") or {}
    best = b.get("best")
    if best and best in b.get("backends", {}):
        return best, float(b["backends"][best]["latency_ms"]["median"])
    lat = (entry.get("profile") or {}).get("latency_ms", {}).get("median")
    return ("eager", float(lat)) if lat is not None else (None, None)


def _fmt(v: Any, spec: str = ".3f", none: str = "-") -> str:
    if v is None:
        return none
    return format(v, spec)


Table = tuple[list[str], list[list[str]]]

#: The "Accuracy and cost" columns: one latency per model (its best backend's); every
#: backend's is in the next table, from the same benchmark processes.
_COST_HEADER = ["model", "mIoU", "pixel acc", "mean acc", "params (M)", "GFLOPs", "size (MB)",
                "best backend", "best ms", "img/s", "peak MB", "epochs", "images", "train s",
                "training"]  # fmt: skip


def _cost_row(e: dict[str, Any]) -> list[str]:
    """One model's row of the accuracy-and-cost table."""
    m, p = e.get("metrics", {}), e.get("profile", {})
    best, best_ms = _best_latency(e)
    tr = e.get("train") or {}
    return [
        e["name"],
        _fmt(m.get("miou")),
        _fmt(m.get("pixel_acc")),
        _fmt(m.get("mean_acc")),
        _fmt(p.get("params", 0) / 1e6, ".3f"),
        _fmt(p.get("flops", 0) / 1e9, ".2f"),
        _fmt(p.get("size_bytes", 0) / 2**20, ".2f"),
        best or "-",
        _fmt(best_ms, ".1f"),
        _fmt(1000 / best_ms if best_ms else None, ".1f"),
        _fmt(p.get("peak_memory_bytes", 0) / 2**20, ".0f"),
        f"{tr.get('epochs_done', '-')}/{tr.get('epochs', '-')}" if tr else "(given)",
        _fmt(tr.get("images"), ",d") if tr else "-",
        _fmt(tr.get("seconds"), ".0f") if tr else "-",
        "; ".join(training_flags(e)) or ("complete" if tr else "not trained here"),
    ]


def _latency_table(done: list[dict[str, Any]]) -> Table:
    """Every backend's median latency per model, with its mIoU on the bench images."""
    backends: list[str] = []
    for e in done:
        for b in (e.get("bench") or {}).get("backends", {}):
            if b not in backends:
                backends.append(b)
    rows = []
    for e in done:
        bb = (e.get("bench") or {}).get("backends", {})
        errors = (e.get("bench") or {}).get("errors", {})
        row = [e["name"]]
        for b in backends:
            if b not in bb:
                row.append("failed" if b in errors else "-")
                continue
            cell = f"{bb[b]['latency_ms']['median']:.1f}"
            if bb[b].get("miou") is not None:
                cell += f" ({bb[b]['miou']:.3f})"
            row.append(cell)
        rows.append(row)
    return ["model", *backends], rows


def report_tables(results: dict[str, Any]) -> dict[str, Table]:
    """The report's tables as ``{title: (header, rows)}`` (strings, ready to render)."""
    done = _done(results)
    classes = results.get("classes", [])
    tables: dict[str, Table] = {"Accuracy and cost": (_COST_HEADER, [_cost_row(e) for e in done])}
    iou = [
        [e["name"], *[_fmt(e.get("metrics", {}).get("iou", {}).get(c)) for c in classes]]
        for e in done
    ]
    tables["IoU per class"] = (["model", *classes], iou)
    tables["Latency per backend: median ms (mIoU on the bench images)"] = _latency_table(done)
    stage_names = ["train", "evaluate", "profile", "bench", "preview"]
    rows = []
    for e in done:
        st = e.get("stages", {})
        rows.append([e["name"], *[_fmt(st.get(s, {}).get("seconds"), ".0f") for s in stage_names]])
    tables["Time per stage of the comparison (s)"] = (["model", *stage_names], rows)
    failed = [m for m in results.get("models", {}).values() if m.get("status") == "failed"]
    if failed:
        tables["Failed"] = (["model", "error"], [[m["name"], m.get("error", "")] for m in failed])
    return tables


def int8_tables(results: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """A table per model whose int8 file needed mixed precision: each module's mIoU
    points alone in int8 and alone in fp32 (most sensitive first), and which stayed fp32."""
    tables = {}
    for e in _done(results):
        if (mixed := _mixed_of(e)) is None:
            continue
        sens = Sensitivity.from_dict(mixed["sensitivity"])
        kept = set(mixed["kept_fp32"])
        rows = [_sensitivity_row(p, sens, kept) for p in sens.ranked()]
        title = (
            f"int8 sensitivity of {e['name']}: all-int8 {mixed['int8_miou']:.3f}, fp32 "
            f"{mixed['fp32_miou']:.3f}, mixed {mixed['miou']:.3f} (mIoU points)"
        )
        tables[title] = (["module", "layers", "int8 alone", "fp32 alone", "deployed"], rows)
    return tables


def _sensitivity_row(p: Any, sens: Sensitivity, kept: set[str]) -> list[str]:
    return [
        p.module,
        str(p.layers),
        f"{100 * (p.int8_alone - sens.fp32_miou):+.2f}",
        f"{100 * (p.fp32_alone - sens.int8_miou):+.2f}",
        "fp32" if p.module in kept else "int8",
    ]


# --------------------------------------------------------------------------- figures


def _save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


# Where a point's name may go, in points from the point, tried in turn: above right,
# below right, above left, below left, then further up or down.
_NAME_PLACES = (
    (6, 4, "left"),
    (6, -12, "left"),
    (-6, 4, "right"),
    (-6, -12, "right"),
    (6, 14, "left"),
    (6, -22, "left"),
)


def _name_points(ax: Any, pts: list[tuple[float, float]], labels: list[str]) -> None:
    """Write each point's name where it covers no other name and no marker.

    Names are placed from the most accurate point down, each in the first place of
    ``_NAME_PLACES`` whose box (as drawn, in pixels) overlaps nothing placed so far, so
    two models of near latency and accuracy get their names above and below, in the
    order of their points; when every place is taken, the first is used. The axes'
    scales and limits must be final (the boxes are read in pixels).
    """
    renderer = FigureCanvasAgg(ax.figure).get_renderer()

    def write(i: int, place: tuple[int, int, str]) -> tuple[Any, Bbox]:
        text = ax.annotate(
            labels[i], pts[i], textcoords="offset points", xytext=place[:2], ha=place[2], fontsize=9
        )
        return text, text.get_window_extent(renderer)

    markers = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in ax.transData.transform(pts)]
    names: list[Bbox] = []
    for i in sorted(range(len(pts)), key=lambda j: -pts[j][1]):
        others = names + markers[:i] + markers[i + 1 :]
        for place in _NAME_PLACES:
            text, box = write(i, place)
            if not any(box.overlaps(o) for o in others):
                break
            text.remove()
        else:  # nowhere is free: the usual place
            _, box = write(i, _NAME_PLACES[0])
        names.append(box)


def _pareto_figure(results: dict[str, Any], done: list[dict[str, Any]]) -> Any:
    """Accuracy against best-backend latency, the Pareto front joined (None: no point)."""
    pts, labels = [], []
    for e in done:
        _, ms = _best_latency(e)
        miou = e.get("metrics", {}).get("miou")
        if ms is not None and miou is not None:
            pts.append((ms, miou))
            labels.append(e["name"])
    if not pts:
        return None
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    front = pareto_front(pts)
    for i, (ms, miou) in enumerate(pts):
        on = i in front
        ax.scatter(
            ms,
            miou,
            s=70 if on else 40,
            color=_COLOURS(i % 10),
            zorder=3,
            edgecolors="black" if on else "none",
        )
    ax.plot(
        [pts[i][0] for i in front],
        [pts[i][1] for i in front],
        "k--",
        lw=1,
        marker="o",
        mfc="none",
        mec="black",
        ms=9,
        label="Pareto front: no other model is both faster and more accurate",
        zorder=2,
    )
    if len(front) < len(pts):
        ax.scatter([], [], s=40, color="grey", label="dominated: another model beats it on both")
    # Under the axes, so it never hides a point.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    ax.set_xscale("log")
    # Plain milliseconds at 1-2-5 steps (a log axis otherwise writes "6 x 10^0"), and at
    # every unit step too when the points span under half a decade (else no label, or one).
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    ax.autoscale_view()
    lo, hi = ax.get_xlim()
    ax.xaxis.set_minor_formatter(plain if np.log10(hi / lo) < 0.5 else NullFormatter())
    _name_points(ax, pts, labels)  # last: it reads the axes' final scales
    ax.set_xlabel("latency, best backend (ms, log scale)")
    ax.set_ylabel("mIoU (val)")
    size = results.get("size")
    ax.set_title(f"Accuracy vs latency at {size[0]}x{size[1]}" if size else "Accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _curves_figure(done: list[dict[str, Any]]) -> Any:
    """Training loss and validation mIoU per epoch of every model (None: nothing was
    trained). Markers on every point, so a one-epoch run is a dot, not nothing; a model
    with no history is named in the legend with the reason."""
    if not any(e.get("history") for e in done):
        return None
    fig = Figure(figsize=(11, 4))
    a1, a2 = fig.subplots(1, 2)
    for i, e in enumerate(done):
        h, c = e.get("history") or [], _COLOURS(i % 10)
        if not h:
            why = "given checkpoint, not trained here" if not e.get("train") else "no epoch"
            a1.plot([], [], color=c, label=f"{e['name']} ({why})")
            continue
        a1.plot(
            [r["epoch"] for r in h], [r["train_loss"] for r in h], ".-", color=c, label=e["name"]
        )
        ev = [r for r in h if r.get("val_miou") is not None]
        a2.plot(
            [r["epoch"] for r in ev],
            [r["val_miou"] for r in ev],
            "o-",
            ms=4,
            color=c,
            label=e["name"],
        )
    a1.set(xlabel="epoch", ylabel="training loss", title="Loss per epoch")
    a2.set(xlabel="epoch", ylabel="val mIoU", title="Validation mIoU per epoch")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return fig


def _timing_figure(done: list[dict[str, Any]]) -> Any:
    """Time per stage: the comparison's stages, and each network's inference stages."""
    fig = Figure(figsize=(12, 0.6 * len(done) + 2.2))
    a1, a2 = fig.subplots(1, 2)
    names = [e["name"] for e in done]
    left = np.zeros(len(done))
    for j, stage in enumerate(["train", "evaluate", "profile", "bench", "preview"]):
        secs = np.array([e.get("stages", {}).get(stage, {}).get("seconds", 0.0) for e in done])
        a1.barh(names, secs, left=left, color=_COLOURS(j), label=stage)
        left += secs
    a1.set(xlabel="seconds", title="Time per stage of the comparison")
    a1.legend(fontsize=8)
    a1.invert_yaxis()
    for i, e in enumerate(done):
        start = 0.0
        for j, st in enumerate((e.get("profile") or {}).get("stages", [])):
            a2.barh(i, st["ms"], left=start, color=_COLOURS(j % 10), edgecolor="white")
            if st["share"] > 0.12:
                a2.text(
                    start + st["ms"] / 2,
                    i,
                    st["name"],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white",
                )
            start += st["ms"]
    a2.set_yticks(range(len(done)), names)
    a2.invert_yaxis()
    a2.set(
        xlabel="ms (eager, profiler, per network stage)",
        title="Inference time per network stage (profiler)",
    )
    return fig


def _predictions_figure(
    done: list[dict[str, Any]], folder: Path, classes: list[str], palette: list[list[int]]
) -> Any:
    """Image, ground truth and every model's prediction per preview row, with a colour
    legend of the class names below the grid (None: no preview)."""
    n = max((len((e.get("preview") or {}).get("files", [])) for e in done), default=0)
    if not n or not folder.is_dir():
        return None
    cols = ["image", "ground truth", *(e["name"] for e in done)]
    # The key gets its own band under the grid (rows of 6 entries, void included), so it
    # never covers the last row of images.
    key_rows = -(-(len(classes) + 1) // 6) if classes and palette else 0
    key_in = 0.35 + 0.22 * key_rows if key_rows else 0.0
    fig = Figure(figsize=(2.2 * len(cols), 1.8 * n + key_in))
    axes = fig.subplots(n, len(cols), squeeze=False)
    for i in range(n):
        paths = [folder / f"image_{i}.png", folder / f"truth_{i}.png"]
        for e in done:
            files_i = (e.get("preview") or {}).get("files", [])
            paths.append(folder / files_i[i] if i < len(files_i) else Path("-"))
        for j, p in enumerate(paths):
            ax = axes[i][j]
            ax.axis("off")
            if p.is_file():
                ax.imshow(np.asarray(Image.open(p)))
            if i == 0:
                ax.set_title(cols[j], fontsize=9)
    fig.tight_layout(rect=(0, key_in / (1.8 * n + key_in), 1, 1))
    if key_rows:
        handles = [
            Patch(facecolor=np.asarray(c) / 255, edgecolor="black", label=name)
            for name, c in zip(classes, palette, strict=False)
        ]
        # void pixels of the ground truth are drawn white
        handles.append(Patch(facecolor="white", edgecolor="black", label="void (not scored)"))
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 6),
            fontsize=8,
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
        )
    return fig


#: Modules drawn per model in the int8 sensitivity figure, most sensitive first.
SENSITIVITY_TOP = 12


def _mixed_of(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The mixed-precision search of a model's bench, when it measured a sensitivity."""
    quant = (entry.get("bench") or {}).get("quantization", {})
    mixed = next((q["mixed"] for q in quant.values() if q.get("mixed")), None)
    return mixed if mixed and mixed.get("sensitivity") else None


def sensitivity_figure(searches: dict[str, dict[str, Any]], top: int = SENSITIVITY_TOP) -> Any:
    """Bars per module, one panel per network: mIoU points lost when the module alone is
    int8 (left, red) and won back when it alone stays fp32 (right, green); the modules the
    deployed file keeps in fp32 hatched. ``searches``: ``{name: MixedResult.to_dict()}``
    with a sensitivity; None when there is none to draw."""
    if not searches:
        return None
    rows = [min(top, len(m["sensitivity"]["parts"])) for m in searches.values()]
    fig = Figure(figsize=(9, 0.32 * sum(rows) + 1.4 * len(rows)))
    axes = np.atleast_1d(fig.subplots(len(searches), 1, height_ratios=[r + 2 for r in rows]))
    for ax, (name, mixed) in zip(axes, searches.items(), strict=True):
        sens, kept = Sensitivity.from_dict(mixed["sensitivity"]), set(mixed["kept_fp32"])
        parts = sens.ranked()[:top]
        y = np.arange(len(parts))
        lost = [100 * (p.int8_alone - sens.fp32_miou) for p in parts]
        won = [100 * (p.fp32_alone - sens.int8_miou) for p in parts]
        hatch = ["//" if p.module in kept else "" for p in parts]
        ax.barh(y, lost, color="#c0392b", hatch=hatch, label="alone in int8")
        ax.barh(y, won, color="#27ae60", hatch=hatch, label="alone in fp32")
        ax.set_yticks(y, [p.module for p in parts], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(
            f"{name}: fp32 {mixed['fp32_miou']:.3f}, all-int8 {mixed['int8_miou']:.3f}, "
            f"deployed {mixed['miou']:.3f} ({len(kept)} module(s) in fp32)",
            fontsize=9,
        )
        ax.set_xlabel("mIoU points")
    axes[0].legend(fontsize=8, loc="lower right")
    return fig


def write_sensitivity_png(name: str, mixed: dict[str, Any], path: str | Path) -> Path | None:
    """:func:`sensitivity_figure` of one network's search as a PNG at ``path`` (atomically);
    None when the search measured no sensitivity (all-int8 was within its budget)."""
    fig = sensitivity_figure({name: mixed} if mixed.get("sensitivity") else {})
    return None if fig is None else _save(fig, Path(path))


def _figures(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Every figure of :data:`FIGURES` that the results can draw, as ``OUT/NAME.png``."""
    done = _done(results)
    if not done:
        return {}
    figures = {
        "pareto": _pareto_figure(results, done),
        "curves": _curves_figure(done),
        "timing": _timing_figure(done),
        "predictions": _predictions_figure(
            done, out / "preview", results.get("classes", []), results.get("palette", [])
        ),
        "int8": sensitivity_figure({e["name"]: m for e in done if (m := _mixed_of(e))}),
    }
    return {k: _save(fig, out / f"{k}.png") for k, fig in figures.items() if fig is not None}


# --------------------------------------------------------------------------- documents


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CAPTIONS = {
    "pareto": "mIoU against latency with each model's fastest backend (within 1 mIoU point); "
    "circled and joined: the Pareto front (no other model is both faster and more accurate)",
    "curves": "Training loss and validation mIoU per epoch",
    "timing": "Where the time goes: the comparison's stages, and inference per network stage",
    "predictions": "Validation images, ground truth and each model's prediction (colours: "
    "the legend under the grid)",
    "int8": "int8 sensitivity: mIoU points each module loses alone in int8 and wins back alone "
    "in fp32, most sensitive first (hatched: deployed in fp32)",
}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.6em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f0f0f0} img{max-width:100%;border:1px solid #ddd}
figure{margin:1em 0 2em} figcaption{color:#555;font-size:13px}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px}
ul.legend span{display:inline-block;width:12px;height:12px;margin-right:5px;
  border:1px solid #333;vertical-align:-1px}
#verdict{background:#f5f8ff;border-left:4px solid #3b6fd6;padding:0.6em 1em}
"""

# Marks the page once every figure has decoded, so a headless check can tell a page with
# broken images from a good one (body data-images="ok N" or "broken K of N").
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var bad = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.dataset.images = bad.length ? ('broken ' + bad.length + ' of ' + imgs.length)
                                            : ('ok ' + imgs.length);
});
"""


def _intro(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    cfg = results.get("config", {})
    size = results.get("size") or ["?", "?"]
    return [
        f"Data: `{results.get('data', {}).get('root')}`, {len(results.get('classes', []))} "
        f"classes; input {size[0]}x{size[1]}.",
        f"Machine: {m.get('cpu', '?')}, {m.get('threads')} threads, torch {m.get('torch')}; "
        f"edgeseg {results.get('edgeseg_version')}.",
        f"Training budget per model: {cfg.get('budget')}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in cfg['budgets'].items())})"
            if cfg.get("budgets")
            else ""
        )
        + f"; backends: {', '.join(cfg.get('backends', []))}.",
        "Scores are fractions (mIoU 0.750 = 75 %); latencies are medians in ms of fresh "
        "benchmark processes, one input image per run.",
    ]


def _code_html(text: str) -> str:
    """Escape ``text`` for HTML, rendering Markdown's `code` spans as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _figure_attrs(name: str, results: dict[str, Any]) -> str:
    """``data-curves``: the models the curves figure draws (a check can read them)."""
    if name != "curves":
        return ""
    drawn = [e["name"] for e in _done(results) if e.get("history")]
    return f" data-curves='{html.escape(' '.join(drawn))}'"


def _figure_key(name: str, results: dict[str, Any]) -> str:
    """The class colour key under the prediction grid, as HTML (also drawn in the figure),
    and the models the curves figure has no curve for, with the reason."""
    if name == "predictions":
        items = "".join(
            f"<li><span style='background:rgb({c[0]},{c[1]},{c[2]})'></span>{html.escape(k)}</li>"
            for k, c in zip(results.get("classes", []), results.get("palette", []), strict=False)
        )
        void = "<li><span style='background:#fff'></span>void (not scored)</li>"
        return f"<ul class='legend'>{items}{void}</ul>"
    if name == "curves":
        missing = [e["name"] for e in _done(results) if not e.get("history")]
        if missing:
            return (
                f"<p class='note'>No curve for {html.escape(', '.join(missing))}: given as "
                "trained checkpoints, not trained here.</p>"
            )
    return ""


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``report.html`` of a comparison to ``out``.

    Args:
        results: the content of a comparison's ``results.json``.
        out: output folder.

    Returns:
        ``{"md", "html", <figure name>...}`` paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(results, out)
    tables = {**report_tables(results), **int8_tables(results)}
    intro = _intro(results)

    words = verdict(results)
    md = [
        "# edgeseg comparison",
        "",
        "**Verdict.** " + " ".join(words),
        "",
        *(f"- {line}" for line in intro),
        "",
    ]
    for title, (header, rows) in tables.items():
        md += [f"## {title}", "", _md_table(header, rows), ""]
    for name in FIGURES:
        if name in figures:
            md += [f"![{_CAPTIONS[name]}]({name}.png)", "", f"*{_CAPTIONS[name]}.*", ""]
    atomic_write_text(out / "report.md", "\n".join(md))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>edgeseg comparison</title>",
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>",
        "<h1>edgeseg comparison</h1>",
        f"<p id='verdict'><strong>Verdict.</strong> {html.escape(' '.join(words))}</p><ul>",
        *(f"<li>{_code_html(line)}</li>" for line in intro),
        "</ul>",
    ]
    for title, (header, rows) in tables.items():
        parts += [f"<h2>{html.escape(title)}</h2>", _html_table(header, rows)]
    for name in FIGURES:
        if name in figures:
            data = base64.b64encode(figures[name].read_bytes()).decode("ascii")
            parts.append(
                f"<figure id='{name}'{_figure_attrs(name, results)}>"
                f"<img alt='{html.escape(_CAPTIONS[name])}' "
                f"src='data:image/png;base64,{data}'><figcaption>"
                f"{html.escape(_CAPTIONS[name])}</figcaption>{_figure_key(name, results)}"
                "</figure>"
            )
    parts.append("</body></html>")
    atomic_write_text(out / "report.html", "\n".join(parts))
    log.info("report: %s, %s", out / "report.md", out / "report.html")
    return {"md": out / "report.md", "html": out / "report.html", **figures}
