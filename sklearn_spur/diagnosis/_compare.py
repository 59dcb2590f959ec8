"""Method comparison: every method the labels allow, fitted, scored and chosen.

The methods and the way each is fitted are the command line's
(:data:`sklearn_spur._cli_methods.METHODS`: every estimator of the registry,
tuned as its guide says). Each is fitted on the fitting part of the validation
split (and the training split where its recipe says so), scored for selection
on the held-out part of the validation split, and evaluated on the evaluation
split. The selection score is worst-group accuracy with the true groups when
the validation split is annotated, else the worst accuracy over groups
inferred with the original head
(:func:`~sklearn_spur.make_inferred_group_scorer`): no group label.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._cli_output import _number
from ..concepts import infer_groups
from ..methods.editor import strength_grid
from ..metrics import group_report
from ..plotting import StrengthCurveDisplay
from ._bootstrap import bootstrap_report

__all__ = ["applicable_methods", "compare_methods", "editor_curve", "evaluate"]

N_STRENGTHS = 25


def _registry():
    """The command line's methods (imported on use: building them reads the
    registry, which reads the package, so not while ``sklearn_spur`` imports)."""
    from .. import _cli_methods

    return _cli_methods


def applicable_methods(annotated_train, annotated_val):
    """``(keys, skipped)``: the methods the labels allow, and why the others not."""
    cm = _registry()
    keys, skipped = [], {}
    for key in cm.METHODS:
        if key in cm.NEEDS_TRAIN_SPURIOUS and not (annotated_train and annotated_val):
            skipped[key] = "needs spurious_train and spurious_val"
        elif key in cm.NEEDS_VAL_SPURIOUS and not annotated_val:
            skipped[key] = "needs spurious_val"
        else:
            keys.append(key)
    return keys, skipped


def evaluate(estimator, split, *, weights, n_boot, seed):
    """Group report of ``estimator`` on ``split`` and its bootstrap intervals."""
    rep = group_report(split.y, estimator.predict(split.X), spurious=split.spurious,
                       missing="ignore", classes=getattr(estimator, "classes_", None),
                       weights=weights)
    return rep, bootstrap_report(rep, n_boot, seed)


def selection_groups(split, head, annotated, seed):
    """The groups the choice is scored over on the selection split: the true
    ones, or those :func:`~sklearn_spur.make_inferred_group_scorer` infers
    (:func:`~sklearn_spur.infer_groups`' default)."""
    if annotated:
        return split.spurious
    return infer_groups(split.X, split.y, head=head, method="auto",
                        random_state=seed)


def _selection_scores(estimator, split, groups):
    """Group accuracies on the selection split, worst first (ties are broken by
    the next-worst group: leximin), and the mean accuracy."""
    rep = group_report(split.y, estimator.predict(split.X), spurious=groups,
                       missing="ignore", classes=getattr(estimator, "classes_", None))
    acc = np.sort(rep.accuracies[~np.isnan(rep.accuracies)])
    return acc, rep.mean_accuracy


def _fit(key, train, val, head, seed, caught):
    method = _registry().METHODS[key]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        start = time.perf_counter()
        est = method.fit(train, val, head, seed)
        elapsed = time.perf_counter() - start
    for w in record:
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            text = f"{w.category.__name__} ({method.name}): " + (
                str(w.message).strip().splitlines() or [""])[0][:300]
            if text not in caught:
                caught.append(text)
    return est, elapsed


def compare_methods(keys, splits, head, *, annotated, weights, n_boot, seed,
                    progress, caught):
    """Fit, select and evaluate every method of ``keys``.

    ``splits`` holds ``train``, ``fit``, ``select`` and ``evaluation`` (each
    with ``X``, ``y``, ``spurious``). Returns the rows of the comparison (JSON
    values), the fitted estimators by key and their ``(GroupReport,
    intervals)`` on the evaluation split by key.
    """
    methods = _registry().METHODS
    groups = selection_groups(splits.select, head, annotated, seed)
    rows, fitted, reports = [], {}, {}
    for key in keys:  # methods, not samples
        progress.set_postfix_str(methods[key].name)
        est, elapsed = _fit(key, splits.train, splits.fit, head, seed, caught)
        accuracies, select_mean = _selection_scores(est, splits.select, groups)
        rep, ci = evaluate(est, splits.evaluation, weights=weights, n_boot=n_boot,
                           seed=seed)
        fitted[key], reports[key] = est, (rep, ci)
        rows.append({
            "key": key, "name": methods[key].name, "needs": methods[key].needs,
            "selection_score": float(accuracies[0]),
            "selection_group_accuracies": accuracies.tolist(),
            "selection_mean_accuracy": select_mean,
            "worst_group_accuracy": _number(rep.worst_group_accuracy),
            "worst_group_accuracy_ci": list(ci["worst_group_accuracy"]),
            "mean_accuracy": _number(rep.mean_accuracy),
            "mean_accuracy_ci": list(ci["mean_accuracy"]),
            "adjusted_accuracy": (None if rep.adjusted_accuracy is None
                                  else _number(rep.adjusted_accuracy)),
            "fit_seconds": elapsed, "recommended": False,
        })
        progress.update()
    return rows, fitted, reports


def choose(rows):
    """Index of the row to recommend: best worst group on the selection split,
    ties broken by the next-worst group (leximin), then by mean accuracy."""
    keys = [(r["selection_group_accuracies"], r["selection_mean_accuracy"])
            for r in rows]
    return max(range(len(rows)), key=keys.__getitem__)


def editor_curve(fitted, evaluation):
    """The editor's worst-group and mean accuracy against its strength, or None."""
    key = next((k for k in ("editor", "editor-free") if k in fitted), None)
    if key is None:
        return None
    values = strength_grid(N_STRENGTHS)
    disp = StrengthCurveDisplay.from_estimator(
        fitted[key], evaluation.X, evaluation.y, spurious=evaluation.spurious,
        values=values, plot=False)
    return {"method": _registry().METHODS[key].name,
            "strength": [float(v) for v in values],
            "worst_group_accuracy": [float(v) for v in disp.worst_group_accuracy],
            "mean_accuracy": [float(v) for v in disp.mean_accuracy],
            "best_strength": disp.best_value_}
