"""The ``sklearn-spur`` command line.

``sklearn-spur demo`` runs every method on the built-in ``make_waterdigits``
benchmark; ``sklearn-spur evaluate`` does the same on your precomputed
embeddings. Each prints mean accuracy, worst-group accuracy (WGA) and fit time
on the test split, and writes a per-group bar chart when matplotlib is there.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .metrics import group_report


@dataclass
class Split:
    X: np.ndarray
    y: np.ndarray
    spurious: np.ndarray | None


@dataclass
class Method:
    """How the CLI fits one method: ``fit(train, val, head, seed) -> estimator``."""

    name: str
    fit: Callable
    needs: str  # what it needs, shown in the table


def _erm(train, val, head, seed):
    from ._dfr import ERMClassifier

    return ERMClassifier(head=head).fit(train.X, train.y)


def _dfr(train, val, head, seed):
    from ._dfr import DFRClassifier

    return DFRClassifier(random_state=seed).fit(val.X, val.y, spurious=val.spurious)


METHODS = {
    "erm": Method("ERM", _erm, "train labels"),
    "dfr": Method("DFR", _dfr, "val groups"),
}


def _needs_val_spurious(key):
    return key in {"dfr"}


def run_methods(methods, train, val, test, *, head=None, seed=0, out=sys.stdout):
    """Fit each method, print its test mean/WGA/fit time; return the reports."""
    reports = {}
    rows = []
    for key in methods:
        method = METHODS[key]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            est = method.fit(train, val, head, seed)
        elapsed = time.perf_counter() - start
        rep = group_report(test.y, est.predict(test.X), spurious=test.spurious,
                           missing="ignore")
        reports[method.name] = rep
        rows.append((method.name, method.needs, rep.mean_accuracy,
                     rep.worst_group_accuracy, elapsed))
    print(f"{'method':<22}{'needs':<16}{'mean acc':>9}{'WGA':>8}{'fit s':>8}", file=out)
    for name, needs, acc, wga, sec in rows:
        print(f"{name:<22}{needs:<16}{acc:9.3f}{wga:8.3f}{sec:8.2f}", file=out)
    return reports


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

    print(f"make_waterdigits(n_classes={args.n_classes}, rho={args.rho}, "
          f"random_state={args.seed}): training the ERM network (cached after the "
          "first run)...", file=out)
    b = make_waterdigits(n_classes=args.n_classes, rho=args.rho, random_state=args.seed)
    print(f"embeddings: train {b.X_train.shape}, val {b.X_val.shape}, "
          f"test {b.X_test.shape}; spurious attribute = background colour", file=out)
    train = Split(b.X_train, b.y_train, b.spurious_train)
    val = Split(b.X_val, b.y_val, b.spurious_val)
    test = Split(b.X_test, b.y_test, b.spurious_test)
    methods = args.method or list(METHODS)
    reports = run_methods(methods, train, val, test, head=b.head, seed=args.seed, out=out)
    if not args.no_plot:
        _plot(reports, args.plot, out)
    return 0


def _load_split(path, name, require):
    from ._io import load_embeddings

    data = load_embeddings(path, require=require)
    return Split(np.asarray(data.X), data.y, data.spurious)


def _cmd_evaluate(args, out):
    methods = args.method or list(METHODS)
    train = _load_split(args.train, "train", ("y",))
    need_val = any(_needs_val_spurious(m) for m in methods)
    val = _load_split(args.val, "val", ("y", "spurious") if need_val else ("y",)) \
        if args.val else None
    if val is None and need_val:
        raise ValueError(f"--val is required by {[m for m in methods if _needs_val_spurious(m)]}")
    test = _load_split(args.test, "test", ("y", "spurious"))
    for split, path in ((val, args.val), (test, args.test)):
        if split is not None and split.X.shape[1] != train.X.shape[1]:
            raise ValueError(
                f"{path}: embeddings have {split.X.shape[1]} features but the train "
                f"file's have {train.X.shape[1]}."
            )
    reports = run_methods(methods, train, val, test, seed=args.seed, out=out)
    if args.plot:
        _plot(reports, args.plot, out)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-spur",
        description="Find and neutralize spurious correlations in trained classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    method_help = f"method(s) to run (default: all): {', '.join(METHODS)}"

    demo = sub.add_parser("demo", help="run every method on the built-in make_waterdigits")
    demo.add_argument("--n-classes", type=int, default=2)
    demo.add_argument("--rho", type=float, default=0.95)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--method", action="append", choices=list(METHODS), help=method_help)
    demo.add_argument("--plot", default="sklearn-spur-demo.png",
                      help="where to write the per-group plot")
    demo.add_argument("--no-plot", action="store_true")
    demo.set_defaults(run=_cmd_demo)

    ev = sub.add_parser("evaluate", help="run methods on your .npz embedding files")
    ev.add_argument("--train", required=True, help=".npz with X, y (spurious optional)")
    ev.add_argument("--val", help=".npz with X, y, spurious (held-out data)")
    ev.add_argument("--test", required=True, help=".npz with X, y, spurious")
    ev.add_argument("--method", action="append", choices=list(METHODS), help=method_help)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--plot", help="write the per-group plot here")
    ev.set_defaults(run=_cmd_evaluate)
    return parser


def main(argv=None, out=None):
    """Entry point of ``sklearn-spur``; returns the exit code."""
    out = sys.stdout if out is None else out
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args, out)
    except (ValueError, OSError) as exc:
        print(f"sklearn-spur: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
