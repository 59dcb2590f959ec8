"""Plots, in scikit-learn's Display style (matplotlib is an optional dependency).

- :class:`GroupAccuracyDisplay`: accuracy per group, several models side by side
  (before/after bars).
- :class:`StrengthCurveDisplay`: worst-group and mean accuracy against an edit
  strength (or any parameter), to choose it by eye.
- :class:`ConceptScoreDisplay`: histograms of concept scores per group.

Each has ``from_estimator`` / ``from_predictions`` constructors and a ``plot``
method; matplotlib is imported only when drawing.
"""

from __future__ import annotations

import numpy as np

from .metrics import group_report

__all__ = [
    "ConceptScoreDisplay",
    "GroupAccuracyDisplay",
    "StrengthCurveDisplay",
    "plot_group_accuracies",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "Plotting needs matplotlib: pip install 'sklearn-spur[plot]'."
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(7, 3.5))
    return ax


def _group_name(group):
    cls, value = group
    return f"y={cls}\ns={value}"


def plot_group_accuracies(reports, ax=None, **bar_kwargs):
    """Grouped bar chart of per-group accuracy for several reports.

    Parameters
    ----------
    reports : dict of {str: GroupReport}
        One bar series per entry, all over the same groups.
    ax : matplotlib Axes, default=None
        Axes to draw on.
    **bar_kwargs
        Passed to ``ax.bar``.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axes(ax)
    names = list(reports)
    first = reports[names[0]]
    x = np.arange(len(first.groups))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        rep = reports[name]
        acc = np.nan_to_num(rep.accuracies, nan=0.0)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, acc, width,
               label=f"{name} (WGA {rep.worst_group_accuracy:.2f})", **bar_kwargs)
    ax.set_xticks(x)
    ax.set_xticklabels([_group_name(g) for g in first.groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per group")
    ax.legend(fontsize=8, loc="lower right")
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


class StrengthCurveDisplay:
    """Worst-group and mean accuracy against a parameter (the edit strength).

    Parameters
    ----------
    values : ndarray of shape (n_values,)
        Parameter values.
    worst_group_accuracy : ndarray of shape (n_values,)
        WGA at each value.
    mean_accuracy : ndarray of shape (n_values,)
        Accuracy at each value.
    param_name : str, default="strength"
        Name on the x axis.

    Attributes
    ----------
    best_value_ : float
        The value with the highest worst-group accuracy (first among ties).
    ax_ : matplotlib Axes
        Set by :meth:`plot`.

    Examples
    --------
    >>> from sklearn_spur.plotting import StrengthCurveDisplay
    >>> disp = StrengthCurveDisplay([0, .5, 1], [.1, .7, .4], [.9, .85, .6])
    >>> disp.best_value_
    0.5
    """

    def __init__(self, values, worst_group_accuracy, mean_accuracy, *,
                 param_name="strength"):
        self.values = np.asarray(values, dtype=float)
        self.worst_group_accuracy = np.asarray(worst_group_accuracy, dtype=float)
        self.mean_accuracy = np.asarray(mean_accuracy, dtype=float)
        self.param_name = param_name
        self.best_value_ = float(self.values[int(np.argmax(self.worst_group_accuracy))])

    def plot(self, ax=None):
        """Draw both curves and mark the best value.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on.

        Returns
        -------
        self : StrengthCurveDisplay
        """
        ax = _axes(ax)
        ax.plot(self.values, self.worst_group_accuracy, "o-", label="worst-group accuracy")
        ax.plot(self.values, self.mean_accuracy, "s--", label="mean accuracy")
        ax.axvline(self.best_value_, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(self.param_name)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, X, y, *, spurious, values, param_name="strength",
                       ax=None, plot=True):
        """Evaluate a *fitted* estimator at each parameter value, without refitting.

        The parameter is set on a copy of the fitted estimator (``set_params``);
        this suits parameters that act after fitting, such as
        ``SingleWeightEditor.strength`` or ``SpuriousProbe.strength`` in a
        fitted Pipeline (``param_name="probe__strength"``).

        Parameters
        ----------
        estimator : fitted estimator
            Must predict with the parameter changed after fit.
        X : array-like of shape (n_samples, n_features)
            Evaluation inputs (a validation split).
        y : array-like of shape (n_samples,)
            True labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
            Spurious attribute of the evaluation split.
        values : array-like
            Parameter values.
        param_name : str, default="strength"
            Parameter to vary.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : StrengthCurveDisplay
        """
        import copy

        wga, acc = [], []
        model = copy.deepcopy(estimator)
        for v in values:
            model.set_params(**{param_name: v})
            rep = group_report(y, model.predict(X), spurious=spurious, missing="ignore")
            wga.append(rep.worst_group_accuracy)
            acc.append(rep.mean_accuracy)
        disp = cls(values, wga, acc, param_name=param_name)
        return disp.plot(ax=ax) if plot else disp

    @classmethod
    def from_search(cls, search, *, param_name="strength", ax=None, plot=True):
        """From a fitted ``GridSearchCV`` over one parameter (mean test score = WGA).

        Parameters
        ----------
        search : fitted GridSearchCV
            Scored with ``worst_group_scorer`` (and, optionally, a second
            ``"accuracy"`` metric with ``refit`` naming the first).
        param_name : str, default="strength"
            The searched parameter.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : StrengthCurveDisplay
        """
        res = search.cv_results_
        values = np.asarray(res[f"param_{param_name}"], dtype=float)
        key = "mean_test_score" if "mean_test_score" in res else next(
            k for k in res if k.startswith("mean_test_"))
        acc_key = "mean_test_accuracy" if "mean_test_accuracy" in res else key
        disp = cls(values, res[key], res[acc_key], param_name=param_name)
        return disp.plot(ax=ax) if plot else disp


class ConceptScoreDisplay:
    """Histograms of concept scores (projections on a concept direction) per group.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Concept score of every sample.
    y : ndarray of shape (n_samples,)
        Class labels.
    spurious : ndarray of shape (n_samples,)
        Spurious attribute.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur.plotting import ConceptScoreDisplay
    >>> disp = ConceptScoreDisplay(np.array([0., .1, 1., 1.1]), [0, 1, 0, 1], [0, 0, 1, 1])
    >>> sorted(disp.groups_)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """

    def __init__(self, scores, y, spurious):
        self.scores = np.asarray(scores, dtype=float)
        self.y = np.asarray(y)
        self.spurious = np.asarray(spurious)
        self.groups_ = {}
        for cls_ in np.unique(self.y):
            for val in np.unique(self.spurious):
                mask = (self.y == cls_) & (self.spurious == val)
                if mask.any():
                    self.groups_[(cls_.item(), val.item())] = self.scores[mask]

    def plot(self, ax=None, bins=30):
        """Draw one step histogram per group.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on.
        bins : int, default=30
            Histogram bins (shared by all groups).

        Returns
        -------
        self : ConceptScoreDisplay
        """
        ax = _axes(ax)
        edges = np.histogram_bin_edges(self.scores, bins=bins)
        for (cls_, val), sc in self.groups_.items():
            ax.hist(sc, bins=edges, histtype="step", lw=1.5, label=f"y={cls_}, s={val}",
                    density=True)
        ax.set_xlabel("concept score")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, probe, X, y, *, spurious, direction=0, ax=None, plot=True):
        """From a fitted :class:`~sklearn_spur.SpuriousProbe` (``concept_scores``).

        Parameters
        ----------
        probe : fitted SpuriousProbe
            Or any object with ``concept_scores(X)`` of shape (n, n_directions).
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,)
            Spurious attribute.
        direction : int, default=0
            Which direction's scores to draw.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : ConceptScoreDisplay
        """
        scores = np.asarray(probe.concept_scores(X))
        scores = scores[:, direction] if scores.ndim == 2 else scores
        disp = cls(scores, y, spurious)
        return disp.plot(ax=ax) if plot else disp

