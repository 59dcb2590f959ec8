"""Group metrics: worst-group accuracy, per-group reports and scorers.

A group is a pair (class, spurious attribute value), or the class with a tuple
of values when ``spurious`` has several columns. Every class is crossed with
every attribute value seen, so a group with no samples is reported (count 0)
instead of silently disappearing from the worst case.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics._scorer import _Scorer
from sklearn.utils._param_validation import StrOptions, validate_params
from sklearn.utils.metadata_routing import MetadataRequest

from ._core.groups import (
    check_labels,
    check_spurious,
    encode_groups,
    missing_spurious_message,
)
from .exceptions import SpuriousNotRoutedError

__all__ = [
    "GroupReport",
    "group_report",
    "worst_class_accuracy",
    "worst_group_accuracy",
    "worst_group_scorer",
    "make_worst_group_scorer",
]

_MISSING = StrOptions({"warn", "ignore", "raise"})


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
    """

    groups: list
    counts: np.ndarray
    accuracies: np.ndarray
    mean_accuracy: float
    worst_group_accuracy: float
    worst_group: tuple
    missing_groups: list = field(default_factory=list)

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


def _report(y_true, y_pred, spurious, missing):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length; got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true is empty: no group accuracy to compute.")
    check_labels(y_true, "y_true")
    s = check_spurious(spurious, y_true.shape[0], who="group metrics")
    groups = encode_groups(y_true, s)
    correct = (y_true == y_pred).astype(np.float64)
    hits = np.bincount(groups.codes, weights=correct, minlength=groups.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(groups.counts > 0, hits / np.maximum(groups.counts, 1), np.nan)
    labels = groups.labels
    absent = [labels[g] for g in np.flatnonzero(groups.counts == 0)]
    if absent:
        msg = (f"{len(absent)} group(s) have no samples and are left out of the "
               f"worst-group accuracy: {absent[:10]}")
        if missing == "raise":
            raise ValueError(msg + " (missing='raise').")
        if missing == "warn":
            warnings.warn(msg + ". Pass missing='ignore' to silence this.",
                          UserWarning, stacklevel=3)
    worst = int(np.nanargmin(acc))
    return GroupReport(
        groups=labels, counts=groups.counts, accuracies=acc,
        mean_accuracy=float(correct.mean()), worst_group_accuracy=float(acc[worst]),
        worst_group=labels[worst], missing_groups=absent,
    )


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "spurious": ["array-like"],
     "missing": [_MISSING]},
    prefer_skip_nested_validation=True,
)
def group_report(y_true, y_pred, *, spurious, missing="warn"):
    """Count and accuracy of every group, with mean and worst-group accuracy.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
        Spurious attribute value(s) of every sample.
    missing : {"warn", "ignore", "raise"}, default="warn"
        What to do about groups (class x attribute value combinations) with no
        samples: they are always listed in the report and left out of the
        worst case; this controls whether that is said with a warning, silently,
        or refused.

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
    >>> report = group_report([0, 0, 1, 1], [0, 1, 1, 1], spurious=["a", "b", "a", "b"])
    >>> report.worst_group_accuracy
    0.0
    >>> print(report)
    class  spurious  count  accuracy
        0         a      1   1.000
        0         b      1   0.000  <- worst
        1         a      1   1.000
        1         b      1   1.000
    mean accuracy 0.750   worst-group accuracy 0.000
    """
    return _report(y_true, y_pred, spurious, missing)


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "spurious": ["array-like"],
     "missing": [_MISSING]},
    prefer_skip_nested_validation=True,
)
def worst_group_accuracy(y_true, y_pred, *, spurious, missing="warn"):
    """Lowest accuracy over groups (class x spurious attribute value).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
        Spurious attribute value(s) of every sample; with several columns a group
        is the class with the tuple of values.
    missing : {"warn", "ignore", "raise"}, default="warn"
        Groups with no samples are left out of the minimum; warn about it, stay
        silent, or raise.

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
    return _report(y_true, y_pred, spurious, missing).worst_group_accuracy


def worst_class_accuracy(y_true, y_pred):
    """Lowest per-class recall: worst-group accuracy with the classes as groups.

    Needs class labels only, so it selects models without group labels
    (:data:`~sklearn_spur.worst_class_scorer`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels.

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
    y_true = np.asarray(y_true)
    return _report(y_true, y_pred, np.zeros(y_true.shape[:1], dtype=np.int8),
                   "ignore").worst_group_accuracy


def _worst_group_score(y_true, y_pred, *, spurious=None, missing="warn"):
    if spurious is None:
        raise SpuriousNotRoutedError(missing_spurious_message("worst_group_scorer"))
    return _report(y_true, y_pred, spurious, missing).worst_group_accuracy


def make_worst_group_scorer(*, missing="warn"):
    """A scorer for ``scoring=`` that computes worst-group accuracy.

    The scorer requests ``spurious`` by default: with
    ``sklearn.set_config(enable_metadata_routing=True)``,
    ``GridSearchCV(..., scoring=scorer).fit(X, y, spurious=s)`` routes each
    fold's attribute values to it. Called without them (routing off, or the
    attribute not passed), it raises
    :class:`~sklearn_spur.exceptions.SpuriousNotRoutedError` with the fix,
    instead of letting the search record NaN scores.

    Parameters
    ----------
    missing : {"warn", "ignore", "raise"}, default="warn"
        Passed to :func:`worst_group_accuracy` (a fold may lack a small group).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, spurious=s)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur.metrics import make_worst_group_scorer
    >>> X = np.array([[0.], [1.], [2.], [3.]]); y = [0, 0, 1, 1]
    >>> scorer = make_worst_group_scorer()
    >>> scorer(LogisticRegression().fit(X, y), X, y, spurious=[0, 1, 0, 1])
    1.0
    """
    if not _MISSING.is_satisfied_by(missing):
        raise ValueError(f"missing must be 'warn', 'ignore' or 'raise', got {missing!r}.")
    scorer = _WorstGroupScorer(_worst_group_score, 1, {"missing": missing}, "predict")
    # Request `spurious` by default without requiring routing to be enabled at
    # import time (`set_score_request` refuses then): this is the request object
    # `set_score_request(spurious=True)` would build.
    request = MetadataRequest(owner=scorer)
    request.score.add_request(param="spurious", alias=True)
    scorer._metadata_request = request
    return scorer


class _WorstGroupScorer(_Scorer):
    """scikit-learn's scorer, callable directly with ``spurious=`` even when routing is off.

    Inside searches and ``cross_validate`` the attribute arrives through
    metadata routing (``_score``, inherited); a direct call
    ``scorer(est, X, y, spurious=s)`` works in any configuration.
    """

    def __call__(self, estimator, X, y_true, *, spurious=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"worst_group_scorer got unexpected arguments {sorted(kwargs)}; it takes "
                "only `spurious`."
            )
        y_pred = estimator.predict(X)
        return self._sign * self._score_func(y_true, y_pred, spurious=spurious,
                                             **self._kwargs)

    def __repr__(self):
        return f"make_worst_group_scorer(missing={self._kwargs['missing']!r})"


worst_group_scorer = make_worst_group_scorer()
"""Ready-made worst-group accuracy scorer (see :func:`make_worst_group_scorer`)."""
