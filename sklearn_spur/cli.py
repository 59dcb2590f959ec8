"""The ``sklearn-spur`` command line.

``sklearn-spur demo`` runs every method on the built-in ``make_waterdigits``
benchmark; ``sklearn-spur evaluate`` does the same on your precomputed
embeddings. Each prints mean accuracy, worst-group accuracy (WGA) and fit time
on the test split, and writes a per-group bar chart when matplotlib is there.
``--json`` prints the results (with every group's accuracy) as JSON on stdout
instead. Warnings (missing groups, classes a model cannot predict, solvers that
did not converge) are shown once each on stderr. Bad input files end the
command with exit code 2 and one line naming the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassifierMixin

from ._cli_output import WarningLog, print_table, results_json
from ._core.labels import as_labels
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
    from .methods import ERMClassifier

    return ERMClassifier(head=head).fit(train.X, train.y)


def _dfr(train, val, head, seed):
    from .methods.dfr import DFRClassifier

    return DFRClassifier(random_state=seed).fit(val.X, val.y, spurious=val.spurious)


def clone_fitted(estimator, **params):
    """A copy of a fitted estimator with some parameters changed (no refit)."""
    import copy

    return copy.deepcopy(estimator).set_params(**params)


def _best_on_val(candidates, val):
    """The fitted candidate with the highest worst-group accuracy on validation."""
    from .metrics import worst_group_accuracy

    scores = [worst_group_accuracy(val.y, est.predict(val.X), spurious=val.spurious,
                                   missing="ignore",
                                   classes=getattr(est, "classes_", None))
              for est in candidates]
    return candidates[int(np.argmax(scores))]


def _probe(train, val, head, seed):
    # Probe fitted on held-out data with groups, frozen; balanced LR on train.
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from .concepts.probe import SpuriousProbe

    probe = SpuriousProbe().fit(val.X, val.y, spurious=val.spurious)
    return make_pipeline(FrozenEstimator(probe), LogisticRegression(
        class_weight="balanced", max_iter=2000)).fit(train.X, train.y)


def _rrclarc(train, val, head, seed):
    # Head refit on train with the penalty along the frozen probe's directions;
    # lam chosen by worst-group accuracy on validation.
    from sklearn.frozen import FrozenEstimator

    from . import RRClArCClassifier, SpuriousProbe

    probe = FrozenEstimator(SpuriousProbe().fit(val.X, val.y, spurious=val.spurious))
    return _best_on_val([
        RRClArCClassifier(probe=probe, head=head, lam=lam, class_weight="balanced")
        .fit(train.X, train.y) for lam in (0.1, 1.0, 10.0, 100.0)], val)


def _editor(train, val, head, seed):
    # Sub-class head fitted on train with the attribute; strength tuned on val
    # (changing it needs no refit).
    from .methods.editor import SingleWeightEditor, strength_grid

    editor = SingleWeightEditor(head=head).fit(train.X, train.y,
                                               spurious=train.spurious)
    candidates = [clone_fitted(editor, strength=st) for st in strength_grid(25)]
    return _best_on_val(candidates, val)


def _editor_free(train, val, head, seed):
    # No attribute anywhere: sub-classes inferred from the head on held-out data.
    from .methods.editor import SingleWeightEditor

    return SingleWeightEditor(head=head, strength=0.0).fit(val.X, val.y)


def _tuner(train, val, head, seed):
    # No attribute anywhere: identification and retraining on held-out data.
    from .methods.neurontune import NeuronTuner

    return NeuronTuner(head=head, random_state=seed).fit(val.X, val.y)


# How the guides tune a method, where its defaults are not the whole story (the
# registry supplies every method; one it has no recipe for runs the generic one).
RECIPES = {
    "ERMClassifier": [("erm", "ERM", _erm, "train labels")],
    "DFRClassifier": [("dfr", "DFR", _dfr, "val groups")],
    "SpuriousProbe": [("probe", "SpuriousProbe+LR", _probe, "val groups")],
    "RRClArCClassifier": [("rrclarc", "RRClArC", _rrclarc, "val groups")],
    "SingleWeightEditor": [
        ("editor", "SingleWeightEditor", _editor, "train+val groups"),
        ("editor-free", "SingleWeightEditor-free", _editor_free, "val labels")],
    "NeuronTuner": [("neurontune", "NeuronTuner", _tuner, "val labels")],
}


def _generic(cls):
    """Fit ``cls`` as it declares (registry): the split, the head, the labels."""
    from .utils.discovery import requirements

    needs = requirements(cls)

    def fit(train, val, head, seed):
        params = cls().get_params()
        est = cls(**{k: v for k, v in (("head", head), ("random_state", seed))
                     if k in params and v is not None})
        if needs["group_labels"] == "required":
            return est.fit(val.X, val.y, spurious=val.spurious)
        split = train if needs["fit_on"] == "training" else val
        return est.fit(split.X, split.y)

    label = ("val groups" if needs["group_labels"] == "required"
             else "train labels" if needs["fit_on"] == "training" else "val labels")
    return fit, label


def _methods():
    """Every method of the registry, keyed as the command line names them."""
    from .utils.discovery import all_estimators

    methods = {}
    for name, cls in all_estimators(include_torch=False):
        if name in RECIPES:
            for key, title, fit, needs in RECIPES[name]:
                methods[key] = Method(title, fit, needs)
        elif issubclass(cls, ClassifierMixin):
            fit, needs = _generic(cls)
            key = name.lower().removesuffix("classifier")
            methods[key] = Method(name.removesuffix("Classifier"), fit, needs)
    first = [k for k in ("erm", "dfr") if k in methods]
    return {k: methods[k] for k in first + sorted(set(methods) - set(first))}


METHODS = _methods()
NEEDS_VAL_SPURIOUS = {k for k, m in METHODS.items() if "val groups" in m.needs
                      or "train+val" in m.needs}
NEEDS_TRAIN_SPURIOUS = {k for k, m in METHODS.items() if "train+val" in m.needs}


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


def _finish(args, command, methods, splits, out, *, head=None, skipped=None,
            inputs=None):
    """Run the methods, then print the table (or the JSON document) and plot."""
    log = WarningLog()
    rows, reports = _run(methods, *splits, head=head, seed=args.seed, log=log)
    info = sys.stderr if args.json else out
    if args.json:
        from . import __version__

        print(results_json(command, rows, reports, version=__version__,
                           skipped=skipped or {}, warnings_shown=log.shown,
                           inputs=inputs or {}), file=out)
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
                   inputs=inputs)


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
    for split, path in ((val, args.val), (test, args.test)):
        if split is not None and split.X.shape[1] != train.X.shape[1]:
            raise InputFileError(
                f"{path}: embeddings have {split.X.shape[1]} features but the train "
                f"file's have {train.X.shape[1]}."
            )
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
    inputs = {"train": args.train, "val": args.val, "test": args.test}
    skipped = {m: need for m, need in lacking.items() if need}
    return _finish(args, "evaluate", methods, (train, val, test), out,
                   skipped=skipped, inputs=inputs)


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
    ev.add_argument("--plot", help="write the per-group plot here")
    ev.set_defaults(run=_cmd_evaluate)
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
