"""Command-line interface: parse, call one API function, render.

Every user error (bad argument, unknown model, unreadable file) is reported as one line
``edgeseg: error: ...`` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from edgeseg.errors import EdgesegError

__all__ = ["main"]

log = logging.getLogger("edgeseg")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _size(text: str) -> tuple[int, int]:
    from edgeseg.utils import parse_size

    try:
        return parse_size(text)
    except EdgesegError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--size: ")) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table with right-aligned numbers."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(row):
            numeric = c.replace(".", "", 1).replace(",", "").replace("%", "").isdigit()
            out.append(c.rjust(widths[i]) if numeric and i else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f}"


# --------------------------------------------------------------------------- commands


def _cmd_models(args: argparse.Namespace) -> int:
    from edgeseg.models import list_models
    from edgeseg.summary import summarize_models

    names = list_models(args.pattern)
    if not names:
        raise EdgesegError(f"no model matches {args.pattern!r}")
    rows = summarize_models(names, input_size=args.size, num_classes=args.classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    h, w = args.size
    print(
        _table(
            [
                (
                    r["name"],
                    r["family"],
                    f"{r['params']:,}",
                    f"{r['flops'] / 1e9:.2f}",
                    r["summary"],
                )
                for r in rows
            ],
            ("model", "family", "params", f"GFLOPs@{h}x{w}", "description"),
        )
    )
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeseg.inference import tune_malloc
    from edgeseg.models import list_models, model_info
    from edgeseg.profiling import profile

    names = args.models or list_models()
    for n in names:
        model_info(n)  # unknown names fail before any time is spent
    if not args.no_malloc_tuning:
        tune_malloc()
    results = []
    for n in names:
        log.info("profiling %s at %dx%d with %d threads", n, *args.size, args.threads)
        results.append(
            profile(
                n,
                args.size,
                num_classes=args.classes,
                threads=args.threads,
                batch_size=args.batch_size,
                warmup=args.warmup,
                repeats=args.repeats,
                fold_bn=not args.no_fold_bn,
            )
        )
    payload: Any = [r.to_dict() for r in results]
    if len(results) == 1 and args.models:
        payload = payload[0]
    if args.out:
        from edgeseg.utils import atomic_write_json

        atomic_write_json(args.out, payload)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    h, w = args.size
    print(f"CPU: {results[0].cpu}; {args.threads} threads; input {h}x{w}, batch {args.batch_size}")
    rows = [
        (
            r.model,
            f"{r.params:,}",
            f"{r.macs / 1e9:.2f}",
            f"{r.paper_macs / 1e9:.1f}",
            _mb(r.size_bytes),
            f"{r.latency_ms['median']:.1f}",
            f"{r.latency_ms['p90']:.1f}",
            r.memory_format,
            _mb(r.peak_memory_bytes),
        )
        for r in results
    ]
    print(
        _table(
            rows,
            (
                "model",
                "params",
                "GMACs",
                "paper GMACs",
                "size MB",
                "median ms",
                "p90 ms",
                "best format",
                "peak MB",
            ),
        )
    )
    for r in results:
        print(f"\n{r.model}: time per stage ({r.memory_format})")
        print(
            _table(
                [(s.name, f"{s.ms:.1f}", f"{100 * s.share:.1f}%") for s in r.stages],
                ("stage", "ms", "share"),
            )
        )
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeseg`` argument parser (exposed for docs and tests)."""
    from edgeseg import __version__

    p = _Parser(prog="edgeseg", description="Efficient semantic segmentation on CPUs.")
    p.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    m = sub.add_parser("models", help="list registered models with parameters and FLOPs")
    m.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'squeeze*'")
    m.add_argument("--size", type=_size, default=(360, 480), help="HxW for the FLOPs (360x480)")
    m.add_argument("--classes", type=_positive, default=11, help="number of classes (11)")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("profile", help="measure size, FLOPs, latency, memory, stage times")
    pr.add_argument("models", nargs="*", help="registered model names (default: all)")
    pr.add_argument("--size", type=_size, default=(360, 480), help="input HxW (360x480)")
    pr.add_argument("--classes", type=_positive, default=11, help="number of classes (11)")
    pr.add_argument("--threads", type=_positive, default=2, help="intra-op threads (2)")
    pr.add_argument("--batch-size", type=_positive, default=1, help="images per pass (1)")
    pr.add_argument("--warmup", type=_positive, default=2, help="untimed runs per format (2)")
    pr.add_argument("--repeats", type=_positive, default=10, help="timed runs per format (10)")
    pr.add_argument("--no-fold-bn", action="store_true", help="time with BatchNorm unfolded")
    pr.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's allocator at its defaults"
    )
    pr.add_argument("--json", action="store_true", help="print JSON instead of tables")
    pr.add_argument("--out", default=None, help="also write the JSON to this file")
    pr.set_defaults(func=_cmd_profile)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeseg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except EdgesegError as e:
        print(f"edgeseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
