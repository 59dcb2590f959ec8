"""Group metrics: worst-group accuracy, per-group reports and scorers.

A group is a pair (class, spurious attribute value), or the class with a tuple
of values when ``spurious`` has several columns. Every class is crossed with
every attribute value seen, so a group with no samples is reported (count 0)
instead of silently disappearing from the worst case.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

from ._core.groups import (
    check_spurious,
    encode_groups,
    host_array,
    missing_spurious_message,
    unexpected_params_message,
)
from ._core.labels import as_labels, check_same_kind, user_stacklevel
from ._core.shares import adjusted_accuracy, group_shares
from ._core.shares import handle_missing as _handle_missing
from ._scorer import (
    _inside_sklearn_score,
    _NotScored,
    make_worst_group_scorer,
    worst_group_scorer,
)
from .exceptions import SpuriousNotRoutedError

__all__ = [
    "GroupReport",
    "group_report",
    "make_worst_group_scorer",
    "worst_class_accuracy",
    "worst_group_accuracy",
    "worst_group_scorer",
]

_MISSING = StrOptions({"warn", "ignore", "raise"})
_PRED_HINT = ("Pass predicted class labels (`estimator.predict(X)`), not scores or "
              "probabilities.")


def _explain_unexpected_keywords(func):
    """Answer ``groups=`` (or any unknown keyword) with the fix, not a TypeError."""
    known = set(inspect.signature(func).parameters)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(unexpected_params_message(
                func.__name__, unknown, takes="y_true, y_pred and spurious"))
        if "spurious" not in kwargs:
            message = missing_spurious_message(func.__name__)
            if _inside_sklearn_score():
                # make_scorer(worst_group_accuracy) in a search, spurious not
                # routed: stop the search with the fix, not a NaN score (_scorer)
                return _NotScored(SpuriousNotRoutedError(message))
            raise TypeError(message)  # a missing argument, explained
        return func(*args, **kwargs)

    return wrapper


@dataclass
class GroupReport:
    """Per-group counts and accuracies, with mean and worst-group accuracy.

    Attributes
    ----------
    groups : list of tuple
        ``(class, attribute value)`` of every group, absent ones included.
    counts : ndarray of shape (n_groups,)
        Samples per group.
    accuracies : ndarray of shape (n_groups,)
        Accuracy per group; NaN for a group with no samples.
    mean_accuracy : float
        Plain accuracy over all samples.
    worst_group_accuracy : float
        Lowest accuracy among the groups with samples.
    worst_group : tuple
        The group that attains it.
    missing_groups : list of tuple
        Groups with no samples (left out of the worst case, and said so).
    adjusted_accuracy : float or None
        Group accuracies averaged with the shares given as ``weights=`` (usually
        the training split's); None when no weights were given.
    """

    groups: list
    counts: np.ndarray
    accuracies: np.ndarray
    mean_accuracy: float
    worst_group_accuracy: float
    worst_group: tuple
    missing_groups: list = field(default_factory=list)
    adjusted_accuracy: float | None = None

    @property
    def by_group(self) -> dict:
        """``{(class, value): accuracy}`` for every group."""
        return dict(zip(self.groups, self.accuracies.tolist()))

    def to_frame(self):
        """The table as a pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame(
            {"class": [g[0] for g in self.groups],
             "spurious": [g[1] for g in self.groups],
             "count": self.counts, "accuracy": self.accuracies}
        )

    def __str__(self) -> str:
        rows = [("class", "spurious", "count", "accuracy")]
        for g, n, a in zip(self.groups, self.counts, self.accuracies):
            mark = "  <- worst" if g == self.worst_group else ""
            rows.append((str(g[0]), str(g[1]), str(int(n)),
                         ("   n/a" if np.isnan(a) else f"{a:6.3f}") + mark))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(r[i].rjust(widths[i]) for i in range(3)) + "  " + r[3]
                 for r in rows]
        lines.append(f"mean accuracy {self.mean_accuracy:.3f}   "
                     f"worst-group accuracy {self.worst_group_accuracy:.3f}")
        if self.adjusted_accuracy is not None:
            lines.append(f"adjusted mean accuracy {self.adjusted_accuracy:.3f}")
        if self.missing_groups:
            lines.append(f"groups with no samples (not in the worst case): "
                         f"{self.missing_groups}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def plot(self, ax=None, *, label=None, **bar_kwargs):
        """Bar chart of accuracy per group (needs matplotlib).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure by default.
        label : str, default=None
            Legend label of the bars.
        **bar_kwargs
            Passed to ``ax.bar``.

        Returns
        -------
        ax : matplotlib Axes
        """
        from .plotting import plot_group_accuracies

        return plot_group_accuracies({label or "model": self}, ax=ax, **bar_kwargs)


def _as_1d_labels(y_true, y_pred):
    y_true, y_pred = np.asarray(host_array(y_true)), np.asarray(host_array(y_pred))
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length; got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true is empty: no group accuracy to compute.")
    y_true, true_values, kind = as_labels(y_true, "y_true")
    y_pred, pred_values, kind_pred = as_labels(y_pred, "y_pred", hint=_PRED_HINT)
    check_same_kind(kind, kind_pred)
    return y_true, y_pred, true_values, pred_values, kind


def _warn_unseen(true_values, pred_values, classes, classes_name):
    if classes is not None:
        unseen = np.setdiff1d(true_values, classes)
        if unseen.size:
            warnings.warn(
                f"class(es) {unseen.tolist()} of y_true are not among the classes the "
                f"model can predict ({classes_name} = {classes.tolist()}): their "
                "groups score 0. The model never saw them in training, or y_true and "
                "the model use different labels.", UserWarning,
                stacklevel=user_stacklevel())
        return
    never = np.setdiff1d(true_values, pred_values)
    if never.size:
        extra = np.setdiff1d(pred_values, true_values)
        why = (f" y_pred holds label(s) {extra.tolist()[:10]} that y_true lacks: if "
               "the two use different encodings (e.g. 0/1 against 1/2), map one onto "
               "the other first." if extra.size else " If the model cannot predict "
               "them (absent from its training data), pass classes=model.classes_.")
        warnings.warn(f"class(es) {never.tolist()[:10]} of y_true are never predicted "
                      f"in y_pred: their groups score 0.{why}", UserWarning,
                      stacklevel=user_stacklevel())


def _report(y_true, y_pred, spurious, missing, *, classes=None, weights=None,
            classes_name="classes", warn_unseen=True):
    y_true, y_pred, true_values, pred_values, kind = _as_1d_labels(y_true, y_pred)
    if classes is not None:
        _, classes, kind_c = as_labels(np.asarray(host_array(classes)).ravel(),
                                       classes_name)
        check_same_kind(kind, kind_c, "y_true", classes_name)
    s = check_spurious(spurious, y_true.shape[0], who="group metrics")
    if warn_unseen:
        _warn_unseen(true_values, pred_values, classes, classes_name)
    groups = encode_groups(y_true, s, all_classes=classes)
    correct = (y_true == y_pred).astype(np.float64)
    hits = np.bincount(groups.codes, weights=correct, minlength=groups.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(groups.counts > 0, hits / np.maximum(groups.counts, 1), np.nan)
    labels = groups.labels
    absent = [labels[g] for g in np.flatnonzero(groups.counts == 0)]
    _handle_missing(absent, missing, f"{len(absent)} group(s) have no samples and are "
                    f"left out of the worst-group accuracy: {absent[:10]}")
    adjusted = None
    if weights is not None:
        adjusted = adjusted_accuracy(labels, groups.counts, acc,
                                     group_shares(weights, kind), missing)
    worst = int(np.nanargmin(acc))
    return GroupReport(
        groups=labels, counts=groups.counts, accuracies=acc,
        mean_accuracy=float(correct.mean()), worst_group_accuracy=float(acc[worst]),
        worst_group=labels[worst], missing_groups=absent, adjusted_accuracy=adjusted,
    )


_CLASSES_DOC = """classes : array-like of shape (n_classes,), default=None
        The classes the model can predict, e.g. ``estimator.classes_``. Classes of
        ``y_true`` outside it get a warning (the model cannot be right on them),
        and classes absent from ``y_true`` are listed as empty groups. Without it,
        classes of ``y_true`` that ``y_pred`` never holds get the warning."""


@_explain_unexpected_keywords
@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "spurious": ["array-like"],
     "missing": [_MISSING], "classes": ["array-like", None],
     "weights": [Mapping, tuple, list, None]},
    prefer_skip_nested_validation=True,
)
def group_report(y_true, y_pred, *, spurious, missing="warn", classes=None,
                 weights=None):
    """Count and accuracy of every group, with mean and worst-group accuracy.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels, of the same type as ``y_true``.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
        Spurious attribute value(s) of every sample: discrete values (whole
        floats only, at most ``max(20, n_samples // 2)`` distinct values per
        column), no missing values.
    missing : {"warn", "ignore", "raise"}, default="warn"
        What to do about groups (class x attribute value combinations) with no
        samples: they are always listed in the report and left out of the
        worst case; this controls whether that is said with a warning, silently,
        or refused.
    %s
    weights : mapping or (y_train, spurious_train), default=None
        Group shares for the adjusted mean accuracy: ``{(class, value): share}``,
        or the training split's labels and attribute values to count the shares
        from (the convention of the DFR, JTT and SpuCo papers). Groups with a share
        but no samples here are left out and the shares renormalised.

    Returns
    -------
    report : GroupReport
        Prints as a table; ``.plot()`` draws a bar chart (matplotlib).

    See Also
    --------
    worst_group_accuracy : Only the worst group's accuracy.

    Examples
    --------
    >>> from sklearn_spur.metrics import group_report
    >>> report = group_report([0, 0, 1, 1], [0, 1, 1, 1], spurious=["a", "b", "a", "b"],
    ...                       weights={(0, "a"): 0.4, (0, "b"): 0.1, (1, "a"): 0.1,
    ...                                (1, "b"): 0.4})
    >>> report.worst_group_accuracy
    0.0
    >>> print(report)
    class  spurious  count  accuracy
        0         a      1   1.000
        0         b      1   0.000  <- worst
        1         a      1   1.000
        1         b      1   1.000
    mean accuracy 0.750   worst-group accuracy 0.000
    adjusted mean accuracy 0.900
    """
    return _report(y_true, y_pred, spurious, missing, classes=classes, weights=weights)


@_explain_unexpected_keywords
@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "spurious": ["array-like"],
     "missing": [_MISSING], "classes": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def worst_group_accuracy(y_true, y_pred, *, spurious, missing="warn", classes=None):
    """Lowest accuracy over groups (class x spurious attribute value).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels, of the same type as ``y_true``.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
        Spurious attribute value(s) of every sample; with several columns a group
        is the class with the tuple of values.
    missing : {"warn", "ignore", "raise"}, default="warn"
        Groups with no samples are left out of the minimum; warn about it, stay
        silent, or raise.
    %s

    Returns
    -------
    wga : float
        Worst-group accuracy in [0, 1].

    Examples
    --------
    >>> from sklearn_spur.metrics import worst_group_accuracy
    >>> worst_group_accuracy([0, 0, 1, 1], [0, 0, 1, 0], spurious=[0, 1, 0, 1])
    0.0
    """
    return _report(y_true, y_pred, spurious, missing,
                   classes=classes).worst_group_accuracy


group_report.__doc__ = group_report.__doc__ % _CLASSES_DOC
worst_group_accuracy.__doc__ = worst_group_accuracy.__doc__ % _CLASSES_DOC


def worst_class_accuracy(y_true, y_pred, *, classes=None):
    """Lowest per-class recall: worst-group accuracy with the classes as groups.

    Needs class labels only, so it selects models without group labels
    (:data:`~sklearn_spur.worst_class_scorer`). It is computed for many
    candidate models in a selection loop, so a class that ``y_pred`` never holds
    is not warned about unless ``classes`` is given.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels.
    classes : array-like of shape (n_classes,), default=None
        The classes the model can predict (``estimator.classes_``): classes of
        ``y_true`` outside it get a warning.

    Returns
    -------
    accuracy : float
        The accuracy of the class the model gets wrong most often.

    Examples
    --------
    >>> from sklearn_spur.metrics import worst_class_accuracy
    >>> worst_class_accuracy([0, 0, 1, 1], [0, 0, 1, 0])
    0.5
    """
    y_true = np.asarray(host_array(y_true))
    return _report(y_true, y_pred, np.zeros(y_true.shape[:1], dtype=np.int8),
                   "ignore", classes=classes,
                   warn_unseen=classes is not None).worst_group_accuracy

