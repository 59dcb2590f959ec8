"""Accuracy per group: bars of one or several models, side by side."""

from __future__ import annotations

import numpy as np

from ..metrics import group_report
from ._base import finish, legend_outside, new_axes

__all__ = ["GroupAccuracyDisplay", "plot_group_accuracies"]


def _group_name(group):
    cls, value = group
    return f"y={cls}\ns={value}"


def plot_group_accuracies(reports, ax=None, **bar_kwargs):
    """Grouped bar chart of per-group accuracy for several reports.

    Parameters
    ----------
    reports : dict of {str: GroupReport}
        One bar series per entry; bars are matched by group, and a group that
        a report lacks (or has no samples in) is marked "n/a".
    ax : matplotlib Axes, default=None
        Axes to draw on.
    **bar_kwargs
        Passed to ``ax.bar``.

    Returns
    -------
    ax : matplotlib Axes
    """
    names = list(reports)
    if not names:
        raise ValueError("plot_group_accuracies: `reports` is empty; pass "
                         "{name: group_report(...)}.")
    # Bars are matched by group, not by position: the reports may hold
    # different groups (a group absent from one split is drawn as n/a).
    groups = list(dict.fromkeys(g for name in names for g in reports[name].groups))
    ax, created = new_axes(ax, figsize=(max(8.0, 0.9 * len(groups) + 3), 3.5))
    x = np.arange(len(groups))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        rep = reports[name]
        by_group = dict(zip(rep.groups, np.asarray(rep.accuracies, float).tolist(),
                            strict=True))
        acc = np.array([by_group.get(g, np.nan) for g in groups])
        pos = x + (i - (len(names) - 1) / 2) * width
        ax.bar(pos, np.nan_to_num(acc, nan=0.0), width,
               label=f"{name} (WGA {rep.worst_group_accuracy:.2f})", **bar_kwargs)
        for p in pos[np.isnan(acc)]:
            ax.text(p, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([_group_name(g) for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per group")
    legend_outside(ax)
    finish(ax, created)
    return ax


class GroupAccuracyDisplay:
    """Per-group accuracy of one or several models (before/after bars).

    Parameters
    ----------
    reports : dict of {str: GroupReport}
        The reports to draw, by model name.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Set by :meth:`plot`.
    figure_ : matplotlib Figure
        Set by :meth:`plot`.

    Examples
    --------
    >>> from sklearn_spur.plotting import GroupAccuracyDisplay
    >>> disp = GroupAccuracyDisplay.from_predictions(
    ...     [0, 0, 1, 1], {"before": [0, 1, 1, 0], "after": [0, 0, 1, 1]},
    ...     spurious=[0, 1, 0, 1], plot=False)
    >>> disp.reports["after"].worst_group_accuracy
    1.0
    """

    def __init__(self, reports):
        self.reports = reports

    def plot(self, ax=None, **bar_kwargs):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **bar_kwargs
            Passed to ``ax.bar``.

        Returns
        -------
        self : GroupAccuracyDisplay
        """
        self.ax_ = plot_group_accuracies(self.reports, ax=ax, **bar_kwargs)
        self.figure_ = self.ax_.figure
        return self

    @classmethod
    def from_predictions(cls, y_true, y_pred, *, spurious, ax=None, plot=True):
        """From predictions: one array, or a dict ``{name: predictions}``.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels.
        y_pred : array-like of shape (n_samples,) or dict of {str: array-like}
            Predictions of one model, or of several by name.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
            Spurious attribute.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : GroupAccuracyDisplay
        """
        preds = y_pred if isinstance(y_pred, dict) else {"model": y_pred}
        reports = {name: group_report(y_true, p, spurious=spurious, missing="ignore")
                   for name, p in preds.items()}
        disp = cls(reports)
        return disp.plot(ax=ax) if plot else disp

    @classmethod
    def from_estimator(cls, estimator, X, y, *, spurious, ax=None, plot=True):
        """From fitted estimators: one, or a dict ``{name: estimator}``.

        Parameters
        ----------
        estimator : fitted classifier or dict of {str: fitted classifier}
            The model(s) to compare.
        X : array-like of shape (n_samples, n_features)
            Inputs.
        y : array-like of shape (n_samples,)
            True labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
            Spurious attribute.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : GroupAccuracyDisplay
        """
        models = estimator if isinstance(estimator, dict) else {
            type(estimator).__name__: estimator}
        preds = {name: m.predict(X) for name, m in models.items()}
        return cls.from_predictions(y, preds, spurious=spurious, ax=ax, plot=plot)
