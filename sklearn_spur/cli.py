"""The ``sklearn-spur`` command line.

``sklearn-spur demo`` runs every method on the built-in ``make_waterdigits``
benchmark; ``sklearn-spur evaluate`` does the same on your precomputed
embeddings. Each prints mean accuracy, worst-group accuracy (WGA) and fit time
on the test split, and writes a per-group bar chart when matplotlib is there.
``--head`` gives evaluate your model's trained last layer (``.npz`` or a torch
state dict), which ERM and every head-based method then use; without it they
use a logistic regression refitted on train, and the output says which.
``sklearn-spur report`` writes the :func:`sklearn_spur.diagnose` report
(HTML, Markdown or JSON).
``--json`` prints the results (with every group's accuracy) as JSON on stdout
instead. Warnings (missing groups, classes a model cannot predict, solvers that
did not converge) are shown once each on stderr. Bad input files end the
command with exit code 2 and one line naming the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from ._cli_methods import METHODS, NEEDS_TRAIN_SPURIOUS, NEEDS_VAL_SPURIOUS
from ._cli_output import WarningLog, print_table, results_json
from ._core.labels import as_labels
from .metrics import group_report


@dataclass
class Split:
    X: np.ndarray
    y: np.ndarray
    spurious: np.ndarray | None


def _run(methods, train, val, test, *, head, seed, log):
    """Fit each method and evaluate it on test: rows for the table, reports."""
    reports, rows = {}, []
    for key in methods:
        method = METHODS[key]
        start = time.perf_counter()
        with log.capture(method.name):
            est = method.fit(train, val, head, seed)
        elapsed = time.perf_counter() - start
        with log.capture(f"{method.name} on the test split"):
            try:
                rep = group_report(test.y, est.predict(test.X), spurious=test.spurious,
                                   classes=getattr(est, "classes_", None))
            except ValueError as exc:  # e.g. test labels of another type than train's
                raise ValueError(f"{method.name} on the test split: {exc}") from None
        reports[method.name] = rep
        rows.append({"key": key, "name": method.name, "needs": method.needs,
                     "mean_accuracy": rep.mean_accuracy,
                     "worst_group_accuracy": rep.worst_group_accuracy,
                     "fit_seconds": elapsed})
    return rows, reports


def run_methods(methods, train, val, test, *, head=None, seed=0, out=sys.stdout,
                log=None):
    """Fit each method, print its test mean/WGA/fit time; return the reports.

    Warnings are printed once each on stderr (through ``log``, a
    :class:`~sklearn_spur._cli_output.WarningLog`).
    """
    rows, reports = _run(methods, train, val, test, head=head, seed=seed,
                         log=WarningLog() if log is None else log)
    print_table(rows, out)
    return reports


def _finish(args, command, methods, splits, out, *, head=None, head_text,
            skipped=None, inputs=None, log=None):
    """Run the methods, then print the table (or the JSON document) and plot."""
    log = WarningLog() if log is None else log
    info = sys.stderr if args.json else out
    print(f"head: {head_text}", file=info)
    rows, reports = _run(methods, *splits, head=head, seed=args.seed, log=log)
    if args.json:
        from . import __version__

        print(results_json(command, rows, reports, version=__version__,
                           skipped=skipped or {}, warnings_shown=log.shown,
                           inputs=inputs or {}, head=head_text), file=out)
    else:
        print_table(rows, out)
    if args.plot and not getattr(args, "no_plot", False):
        _plot(reports, args.plot, info)
    return 0


def _unique(methods):
    """The methods asked for, in order, each once (all of them by default)."""
    return list(dict.fromkeys(methods or METHODS))


def _plot(reports, path, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("(matplotlib not installed: no plot; pip install 'sklearn-spur[plot]')",
              file=out)
        return
    from .plotting import plot_group_accuracies

    ax = plot_group_accuracies(reports)
    ax.figure.set_size_inches(max(7, 1.2 * len(ax.get_xticks())), 4)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
    print(f"per-group accuracy plot written to {path}", file=out)


def _cmd_demo(args, out):
    from .datasets import make_waterdigits

    info = sys.stderr if args.json else out
    print(f"make_waterdigits(n_classes={args.n_classes}, rho={args.rho}, "
          f"random_state={args.seed})...", file=info)
    log = WarningLog()
    with log.capture("make_waterdigits"):
        b = make_waterdigits(n_classes=args.n_classes, rho=args.rho,
                             random_state=args.seed, verbose=not args.json)
    if b.weights == "shipped":
        print("the CNN's shipped weights: the accuracies below are the same on every "
              "machine (only the fit times vary)", file=info)
    else:
        print("the CNN was trained on this machine: the accuracies below vary between "
              "machines by a few points (torch's CPU kernels differ)", file=info)
    print(f"embeddings: train {b.X_train.shape}, val {b.X_val.shape}, "
          f"test {b.X_test.shape}; spurious attribute = background colour", file=info)
    splits = [Split(getattr(b, f"X_{k}"), getattr(b, f"y_{k}"),
                    getattr(b, f"spurious_{k}")) for k in ("train", "val", "test")]
    inputs = {"dataset": "make_waterdigits", "n_classes": args.n_classes,
              "rho": args.rho, "random_state": args.seed}
    return _finish(args, "demo", _unique(args.method), splits, out, head=b.head,
                   head_text=f"the make_waterdigits CNN's last layer (W shape "
                             f"{tuple(b.head.weight.shape)})", inputs=inputs)


class InputFileError(ValueError):
    """An input file cannot be used; the message names it (exit code 2)."""


def _load_split(path, name, require):
    from ._io import load_embeddings

    try:
        # mmap=False: reading through zipfile checks every member's CRC, so a
        # corrupted file fails here instead of giving wrong embeddings
        data = load_embeddings(path, require=require, mmap=False)
        split = Split(np.asarray(data.X), data.y, data.spurious)
    except Exception as exc:  # noqa: BLE001 (a malformed file fails in many ways)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, KeyError):
            msg = f"malformed archive ({msg})"
        elif not isinstance(exc, (ValueError, OSError)):
            msg = f"{type(exc).__name__}: {msg}"
        if not msg.startswith(str(path)):
            msg = f"{path}: cannot read the {name} embeddings: {msg}"
        raise InputFileError(msg) from None
    if split.y is not None:  # NaN, mixed or continuous labels: name the file
        try:
            as_labels(split.y, "y")
        except ValueError as exc:
            raise InputFileError(f"{path}: {exc}") from None
    return split


def _check_widths(train, others):
    """Every other split (and the head) reads as many features as train."""
    for split, path in others:
        if split is not None and split.X.shape[1] != train.X.shape[1]:
            raise InputFileError(
                f"{path}: embeddings have {split.X.shape[1]} features but the train "
                f"file's have {train.X.shape[1]}."
            )


def load_head_or_refit(path, train, log):
    """The ``--head`` file as a ``(W, b[, classes])`` tuple, and a description.

    Without a file, a logistic regression fitted on train (ERM) stands in for
    the trained head, the same one for every method.
    """
    from ._cli_head import describe_head, load_head

    if path is None:
        from .methods import ERMClassifier

        with log.capture("the ERM head fitted on train"):
            erm = ERMClassifier().fit(train.X, train.y)
        return (erm.coef_, erm.intercept_, erm.classes_), describe_head(None, None)
    head = load_head(path)
    if head[0].shape[1] != train.X.shape[1]:
        raise InputFileError(
            f"{path}: the head takes {head[0].shape[1]} features but the embeddings "
            f"have {train.X.shape[1]}. Pass the layer that reads these embeddings.")
    return head, describe_head(path, head)


def _missing_for(key, args, train, val):
    """What a method lacks in the given files (a message), or None."""
    if key != "erm" and val is None:
        return f"--val is required by method {key!r}"
    if key in NEEDS_VAL_SPURIOUS and val.spurious is None:
        return f"{args.val}: missing key 'spurious' (method {key!r} needs it)"
    if key in NEEDS_TRAIN_SPURIOUS and train.spurious is None:
        return f"{args.train}: missing key 'spurious' (method {key!r} needs it)"
    return None


def _cmd_evaluate(args, out):
    train = _load_split(args.train, "train", ("y",))
    val = _load_split(args.val, "val", ("y",)) if args.val else None
    test = _load_split(args.test, "test", ("y", "spurious"))
    _check_widths(train, ((val, args.val), (test, args.test)))
    log = WarningLog()
    methods = _unique(args.method)
    lacking = {m: _missing_for(m, args, train, val) for m in methods}
    if args.method:  # asked for by name: refuse what cannot run
        for need in lacking.values():
            if need:
                raise ValueError(need)
    else:
        for m, need in lacking.items():
            if need:
                print(f"(skipping {METHODS[m].name}: {need})",
                      file=sys.stderr if args.json else out)
        methods = [m for m in methods if not lacking[m]]
    if args.head is None and not any(METHODS[m].uses_head for m in methods):
        head, head_text = None, "none (the methods run read no head)"
    else:
        head, head_text = load_head_or_refit(args.head, train, log)
    inputs = {"train": args.train, "val": args.val, "test": args.test,
              "head": args.head}
    skipped = {m: need for m, need in lacking.items() if need}
    return _finish(args, "evaluate", methods, (train, val, test), out, head=head,
                   head_text=head_text, skipped=skipped, inputs=inputs, log=log)


def _cmd_report(args, out):
    from ._cli_report import run_report

    return run_report(args, out)


def _add_common(p, method_help):
    p.add_argument("--method", nargs="+", action="extend", choices=list(METHODS),
                   metavar="METHOD", help=method_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (messages go to stderr)")


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sklearn-spur",
        description="Find and neutralize spurious correlations in trained classifiers.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    method_help = (f"method(s) to run, several in one flag or repeated (default: "
                   f"all): {', '.join(METHODS)}")

    demo = sub.add_parser("demo",
                          help="run every method on the built-in make_waterdigits")
    demo.add_argument("--n-classes", type=int, default=2)
    demo.add_argument("--rho", type=float, default=0.95)
    _add_common(demo, method_help)
    demo.add_argument("--plot", default="sklearn-spur-demo.png",
                      help="where to write the per-group plot")
    demo.add_argument("--no-plot", action="store_true")
    demo.set_defaults(run=_cmd_demo)

    ev = sub.add_parser("evaluate", help="run methods on your .npz embedding files")
    ev.add_argument("--train", required=True, help=".npz with X, y (spurious optional)")
    ev.add_argument("--val", help=".npz with X, y, spurious (held-out data)")
    ev.add_argument("--test", required=True, help=".npz with X, y, spurious")
    _add_common(ev, method_help)
    from ._cli_head import HEAD_HELP

    ev.add_argument("--head", metavar="FILE", help=HEAD_HELP)
    ev.add_argument("--plot", help="write the per-group plot here")
    ev.set_defaults(run=_cmd_evaluate)

    from ._cli_report import add_report_arguments

    report = sub.add_parser(
        "report", help="diagnose a trained head and write a report (HTML, MD, JSON)")
    add_report_arguments(report)
    report.set_defaults(run=_cmd_report)
    return parser


def main(argv=None, out=None):
    """Entry point of ``sklearn-spur``; returns the exit code.

    Usage errors and bad input (a missing or malformed file, labels that cannot
    be evaluated) print one line on stderr and return 2.
    """
    out = sys.stdout if out is None else out
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args, out)
    except (ValueError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"sklearn-spur: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
