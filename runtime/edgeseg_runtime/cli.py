"""``edgeseg-run``: segment images on a device with an exported network, no PyTorch.

    edgeseg-run predict MODEL IMAGES... --out DIR [--backend ort|openvino|litert] [--legend]
    edgeseg-run predict MODEL IMAGES... --out DIR --ray auto --actors 8 [--no-overlays]
    edgeseg-run info MODEL

MODEL is a bundle folder (``edgeseg export CKPT --bundle DIR``) or an ONNX file; one
exported by edgeseg carries its classes and normalisation, another needs ``--classes``
(and ``--mean``/``--std``). Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from edgeseg_runtime.backends import RUNTIME_BACKENDS
from edgeseg_runtime.card import ModelCard
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.files import atomic_write_bytes, check_replace
from edgeseg_runtime.processing import check_work_size

__all__ = ["main", "predict"]


def predict(
    model: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    backend: str | None = None,
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    alpha: float = 0.5,
    legend: bool = False,
    card: ModelCard | None = None,
    overwrite: bool = False,
    overlays: bool = True,
) -> list[dict[str, Any]]:
    """Segment every image (files or folders) into ``out``'s ``labels/`` and ``overlays/``.

    Earlier predictions of the same images in ``out`` are replaced only with
    ``overwrite``; the refusal comes before any work. Without ``overlays`` only the label
    maps are written.

    Returns:
        One ``{"image", "labels", "overlay", "latency_ms"}`` per image (the network's
        time, without reading and writing).
    """
    from edgeseg_runtime.files import (
        check_alpha,
        check_predictions_free,
        collect_images,
        write_prediction,
    )
    from edgeseg_runtime.processing import read_image
    from edgeseg_runtime.segmenter import Segmenter

    files = collect_images(inputs)  # every input checked before the network loads
    check_predictions_free(out, files, overwrite)
    alpha = check_alpha(alpha)
    seg = Segmenter(model, backend=backend, threads=threads, input_size=input_size, card=card)
    rows = []
    for f in files:
        rgb = read_image(f)
        labels = seg(rgb)
        paths = write_prediction(
            out,
            f.stem,
            rgb,
            labels,
            seg.classes,
            seg.card.palette,
            alpha=alpha,
            legend=legend,
            overlays=overlays,
        )
        rows.append({"image": str(f), **paths, "latency_ms": seg.last_ms})
    return rows


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers r,g,b") from None
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers r,g,b")
    return vals


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 360x480") from None
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 360x480")
    try:
        return check_work_size((h, w), "")
    except EdgesegError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return int(text)


def _alpha(text: str) -> float:
    try:
        a = float(text)
    except ValueError:
        a = -1.0
    if not 0.0 <= a <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an opacity in [0, 1]")
    return a


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints the usage
    too); edgeseg's CLI uses it as well."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edgeseg-run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="write label PNGs and colour overlays for images")
    pr.add_argument("model", help="bundle folder or ONNX file")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, help="output folder: labels/ and overlays/")
    pr.add_argument(
        "--backend",
        choices=RUNTIME_BACKENDS,
        default=None,
        help="engine (litert for a .tflite file, else ort)",
    )
    pr.add_argument("--threads", type=_positive, default=None, help="intra-op threads")
    pr.add_argument("--size", type=_size, default=None, help="run the network at HxW")
    pr.add_argument("--alpha", type=_alpha, default=0.5, help="overlay opacity (0.5)")
    pr.add_argument("--legend", action="store_true", help="class colour key under overlays")
    pr.add_argument(
        "--classes",
        default=None,
        help="a,b,c: class names of an ONNX file without edgeseg metadata",
    )
    pr.add_argument("--mean", type=_floats, default=None, help="r,g,b input mean (ImageNet's)")
    pr.add_argument("--std", type=_floats, default=None, help="r,g,b input std (ImageNet's)")
    pr.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print one JSON row per image (to FILE if given)",
    )
    pr.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier predictions, an existing --json FILE",
    )
    pr.add_argument("--no-overlays", action="store_true", help="write the label maps only")
    pr.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="segment on a Ray cluster: local, auto or HOST:PORT (extra [ray]); "
        "images already done in --out are skipped",
    )
    pr.add_argument(
        "--actors",
        type=_positive,
        default=2,
        help="with --ray: inference sessions at once, --threads each (2)",
    )
    info = sub.add_parser("info", help="what a bundle or ONNX file says about its network")
    info.add_argument("model", help="bundle folder or ONNX file")
    return p


def _check_out(out: str) -> None:
    if not str(out).strip():
        raise EdgesegError("--out: empty path; name the output folder")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise EdgesegError(f"--out {p}: is a file, not a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EdgesegError(f"--out {p}: {parent} is a file")
            break


def _run(args: argparse.Namespace) -> int:
    from edgeseg_runtime.segmenter import load_card

    card = None
    if getattr(args, "classes", None) is not None:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not names:
            raise EdgesegError("--classes: name at least one class")
        card = ModelCard.from_flags(names, args.mean, args.std)
    elif getattr(args, "mean", None) or getattr(args, "std", None):
        raise EdgesegError("--mean/--std go with --classes (an edgeseg file carries its own)")
    if args.command == "info":
        path, c = load_card(args.model)
        print(json.dumps({"model_file": str(path), **c.to_dict()}, indent=2))
        return 0
    _check_out(args.out)
    if args.json not in (None, "-"):
        check_replace(args.json, "--json", args.overwrite)
    if args.ray is not None:
        return _run_ray(args, card)
    rows = predict(
        args.model,
        args.images,
        args.out,
        backend=args.backend,
        threads=args.threads,
        input_size=args.size,
        alpha=args.alpha,
        legend=args.legend,
        card=card,
        overwrite=args.overwrite,
        overlays=not args.no_overlays,
    )
    if args.json is not None:
        _write_rows(args.json, rows)
        return 0
    ms = [r["latency_ms"] for r in rows]
    print(
        f"segmented {len(rows)} image(s) with {args.backend or 'its default engine'}: "
        "labels and overlays in "
        f"{args.out}; network median {statistics.median(ms):.1f} ms per image "
        f"(min {min(ms):.1f}, max {max(ms):.1f})"
    )
    return 0


def _write_rows(where: str, rows: list[dict[str, Any]]) -> None:
    """One JSON row per image on stdout (``-``) or into a file (atomically: a full disk
    leaves no empty or half-written file)."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if where == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(where, text.encode("utf-8"))


def _run_ray(args: argparse.Namespace, card: ModelCard | None) -> int:
    """``predict --ray``: the actor pool of :func:`edgeseg_runtime.scale.ray_predict`."""
    from functools import partial

    from edgeseg_runtime.scale import ray_predict, summary_line
    from edgeseg_runtime.segmenter import Segmenter

    factory = partial(
        Segmenter,
        args.model,
        backend=args.backend,
        threads=args.threads or 1,
        input_size=args.size,
        card=card,
    )
    factory()  # a bad model file fails here, in one line, before a cluster is joined
    res = ray_predict(
        factory,
        args.images,
        args.out,
        address=args.ray,
        actors=args.actors,
        threads=args.threads or 1,
        alpha=args.alpha,
        legend=args.legend,
        overlays=not args.no_overlays,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
    )
    if args.json is not None:
        _write_rows(args.json, res.pop("rows"))
    line = summary_line(res, args.out)
    if args.json != "-":
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edgeseg-run``; returns the exit status (2 on a user error)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except EdgesegError as e:
        text = " ".join(str(e).strip().splitlines())  # one line, whatever the message holds
        print(f"edgeseg-run: error: {text}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: unreadable, full disk, no permission
        print(f"edgeseg-run: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
