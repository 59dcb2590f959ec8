"""``sklearn-spur report``: :func:`sklearn_spur.diagnose` on embedding files, written
as a self-contained HTML page, Markdown or JSON."""

from __future__ import annotations

import json
import os
import sys

from ._cli_output import WarningLog

__all__ = ["REPORT_FORMATS", "add_report_arguments", "run_report"]

#: Output suffix -> what is written.
REPORT_FORMATS = {".html": "HTML", ".htm": "HTML", ".md": "Markdown", ".json": "JSON"}
DEFAULT_OUTPUT = "sklearn-spur-report.html"


def add_report_arguments(p):
    """The arguments of ``sklearn-spur report``."""
    from ._cli_head import HEAD_HELP

    p.add_argument("--train", required=True,
                   help=".npz with X, y (spurious optional): the head's training data")
    p.add_argument("--val", required=True,
                   help=".npz with X, y (spurious optional): held-out data the "
                        "methods are fitted and chosen on")
    p.add_argument("--test", help=".npz with X, y (spurious optional): evaluated "
                                  "on, for information (else a held-out part of val)")
    p.add_argument("--head", metavar="FILE", help=HEAD_HELP)
    p.add_argument("-o", "--output", default=None,
                   help=f"where to write the report: .html, .md or .json (default: "
                        f"{DEFAULT_OUTPUT}, or nothing with --json)")
    p.add_argument("--seed", type=int, default=0, help="random_state of diagnose")
    p.add_argument("--n-boot", type=int, default=None,
                   help="bootstrap resamples of the per-group intervals "
                        "(default: diagnose's)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="progress bars on stderr")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON on stdout (messages go to stderr)")


def _output_path(args):
    """The report's path (or None: --json only), checked before the long run."""
    path = args.output
    if path is None:
        return None if args.json else DEFAULT_OUTPUT
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in REPORT_FORMATS:
        raise ValueError(f"{path}: the report is written as .html, .md or .json, "
                         "chosen by the suffix of -o/--output.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: no such directory {folder!r}.")
    return path


def _write(diagnosis, path):
    kind = REPORT_FORMATS[os.path.splitext(path)[1].lower()]
    if kind == "HTML":
        diagnosis.to_html(path)
    elif kind == "Markdown":
        diagnosis.to_markdown(path)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(diagnosis.to_dict(), fh, indent=2)


def run_report(args, out):
    """Load the files and the head, diagnose, write the report; the exit code."""
    from .cli import _check_widths, _load_split, load_head_or_refit

    path = _output_path(args)
    import sklearn_spur  # looked up at run time (tests stand a recorder in)

    train = _load_split(args.train, "train", ("y",))
    val = _load_split(args.val, "val", ("y",))
    test = _load_split(args.test, "test", ("y",)) if args.test else None
    _check_widths(train, ((val, args.val), (test, args.test)))
    info = sys.stderr if args.json else out
    log = WarningLog()
    head, head_text = load_head_or_refit(args.head, train, log)
    print(f"head: {head_text}", file=info)
    kwargs = {"spurious_train": train.spurious, "spurious_val": val.spurious,
              "random_state": args.seed, "verbose": args.verbose}
    if test is not None:
        kwargs.update(X_test=test.X, y_test=test.y, spurious_test=test.spurious)
    if args.n_boot is not None:
        kwargs["n_boot"] = args.n_boot
    with log.capture("diagnose"):
        diagnosis = sklearn_spur.diagnose(head, train.X, train.y, val.X, val.y, **kwargs)
    if path is not None:
        _write(diagnosis, path)
        print(f"{REPORT_FORMATS[os.path.splitext(path)[1].lower()]} report written "
              f"to {path}", file=info)
    recommended = getattr(diagnosis, "recommended_", None)
    if recommended is not None:
        print(f"recommended: {type(recommended).__name__}", file=info)
    if args.json:
        from . import __version__

        doc = {"command": "report", "version": __version__,
               "inputs": {"train": args.train, "val": args.val, "test": args.test,
                          "head": args.head, "output": path},
               "head": head_text, "warnings": log.shown,
               "diagnosis": diagnosis.to_dict()}
        print(json.dumps(doc, indent=2, default=str), file=out)
    return 0
