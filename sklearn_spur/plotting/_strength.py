"""Worst-group accuracy against the edit strength (or any parameter)."""

from __future__ import annotations

import copy

import numpy as np

from ..metrics import group_report, worst_group_scorer
from ._base import finish, legend_outside, new_axes

__all__ = ["StrengthCurveDisplay"]

_STRENGTH_TICKS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)


def _shift(values):
    return -np.log1p(-np.asarray(values, dtype=float))


def _spaced_ticks(max_shift):
    """Strength ticks for the top axis, at least 1/7 of the shift range apart."""
    ticks, last = [], -np.inf
    for t in _STRENGTH_TICKS:
        shift = float(_shift(t))
        if shift <= max_shift and shift - last >= max(max_shift, 1e-9) / 7:
            ticks.append(t)
            last = shift
    return ticks


def _scorer_name(scorer):
    """How to label a search's score on the y axis."""
    # every make_worst_group_scorer(...) has the class of the ready-made one
    if isinstance(scorer, type(worst_group_scorer)):
        return "worst-group accuracy"
    if isinstance(scorer, str):
        return scorer.replace("_", " ")
    if scorer is None:
        return "score (the estimator's score method)"
    return getattr(scorer, "__name__", "score")


class StrengthCurveDisplay:
    """Worst-group (and mean) accuracy against a parameter (the edit strength).

    Parameters
    ----------
    values : array-like of shape (n_values,)
        Parameter values.
    worst_group_accuracy : array-like of shape (n_values,)
        WGA (or the score named ``score_name``) at each value.
    mean_accuracy : array-like of shape (n_values,) or None, default=None
        Accuracy at each value; not drawn when None (a search with one metric).
    param_name : str, default="strength"
        Name of the parameter.
    score_name : str, default="worst-group accuracy"
        Label of the first curve.

    Attributes
    ----------
    best_value_ : float
        The value with the highest score (first among ties).
    ax_ : matplotlib Axes
        Set by :meth:`plot`.
    figure_ : matplotlib Figure
        Set by :meth:`plot`.

    Examples
    --------
    >>> from sklearn_spur.plotting import StrengthCurveDisplay
    >>> disp = StrengthCurveDisplay([0, .5, 1], [.1, .7, .4], [.9, .85, .6])
    >>> disp.best_value_
    0.5
    """

    def __init__(self, values, worst_group_accuracy, mean_accuracy=None, *,
                 param_name="strength", score_name="worst-group accuracy"):
        self.values = np.asarray(values, dtype=float)
        self.worst_group_accuracy = np.asarray(worst_group_accuracy, dtype=float)
        self.mean_accuracy = (None if mean_accuracy is None
                              else np.asarray(mean_accuracy, dtype=float))
        self.param_name = param_name
        self.score_name = score_name
        self.best_value_ = float(self.values[int(np.nanargmax(self.worst_group_accuracy))])

    def _x_kind(self, x):
        in_unit = bool(np.all((self.values >= 0) & (self.values < 1)))
        if x == "auto":
            wide = in_unit and self.values.max() >= 0.9
            return "shift" if wide and self.param_name.endswith("strength") else "value"
        if x == "shift" and not in_unit:
            raise ValueError(
                f"StrengthCurveDisplay: x='shift' draws -log(1 - {self.param_name}), "
                f"which needs values in [0, 1); got {self.values.min():g} to "
                f"{self.values.max():g}. Use x='strength'."
            )
        if x not in ("shift", "strength"):
            raise ValueError(
                f"StrengthCurveDisplay: x must be 'strength', 'shift' or 'auto'; got "
                f"{x!r}."
            )
        return "value" if x == "strength" else "shift"

    def plot(self, ax=None, *, x="auto"):
        """Draw the curves and mark the best value.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on.
        x : {"auto", "strength", "shift"}, default="auto"
            The horizontal axis: the parameter itself, or the bias shift
            ``-log(1 - strength)``, which spreads out the range near 1 where
            an edit strength acts (0.95 is a shift of 3.0, 0.99 of 4.6); the
            strength is then on the top axis. ``"auto"``: the shift for a
            parameter named ``*strength`` with values in [0, 1) reaching 0.9.

        Returns
        -------
        self : StrengthCurveDisplay
        """
        kind = self._x_kind(x)
        xs = self.values if kind == "value" else _shift(self.values)
        ax, created = new_axes(ax)
        ax.plot(xs, self.worst_group_accuracy, "o-", ms=4, label=self.score_name)
        if self.mean_accuracy is not None:
            ax.plot(xs, self.mean_accuracy, "s--", ms=4, label="mean accuracy")
        best = xs[int(np.nanargmax(self.worst_group_accuracy))]
        # a Pipeline's "step__strength" is labelled "strength"
        name = self.param_name.rsplit("__", 1)[-1]
        ax.axvline(best, color="grey", lw=0.8, ls=":",
                   label=f"best: {name} = {self.best_value_:.4g}")
        if kind == "shift":
            ax.set_xlabel(f"bias shift -log(1 - {name})")
            top = ax.secondary_xaxis("top", functions=(
                lambda t: -np.expm1(-np.asarray(t, dtype=float)),
                lambda v: _shift(np.minimum(np.asarray(v, dtype=float), 1 - 1e-12))))
            ticks = _spaced_ticks(xs.max())
            top.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
            top.set_xlabel(name)
        else:
            ax.set_xlabel(name)
        scores = [self.worst_group_accuracy] + (
            [] if self.mean_accuracy is None else [self.mean_accuracy])
        finite = np.concatenate(scores)
        finite = finite[np.isfinite(finite)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy" if "accuracy" in self.score_name else "score")
        legend_outside(ax)
        finish(ax, created)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, X, y, *, spurious, values, param_name="strength",
                       ax=None, plot=True, x="auto"):
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
        x : {"auto", "strength", "shift"}, default="auto"
            Horizontal axis (see :meth:`plot`).

        Returns
        -------
        display : StrengthCurveDisplay
        """
        wga, acc = [], []
        model = copy.deepcopy(estimator)
        for v in values:
            model.set_params(**{param_name: v})
            rep = group_report(y, model.predict(X), spurious=spurious, missing="ignore")
            wga.append(rep.worst_group_accuracy)
            acc.append(rep.mean_accuracy)
        disp = cls(values, wga, acc, param_name=param_name)
        return disp.plot(ax=ax, x=x) if plot else disp

    @classmethod
    def from_search(cls, search, *, param_name="strength", ax=None, plot=True,
                    x="auto"):
        """From a fitted ``GridSearchCV`` over one parameter.

        The curve is the mean test score of the refit metric (of the only
        metric for a single ``scoring``), labelled by its scorer: "worst-group
        accuracy" for :data:`~sklearn_spur.worst_group_scorer`. Mean accuracy
        is drawn only when the search also has a metric named ``"accuracy"``.

        Parameters
        ----------
        search : fitted GridSearchCV
            Searched over ``param_name`` alone; scored with
            ``worst_group_scorer``, optionally with
            ``scoring={"wga": worst_group_scorer, "accuracy": "accuracy"}`` and
            ``refit="wga"``.
        param_name : str, default="strength"
            The searched parameter.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.
        x : {"auto", "strength", "shift"}, default="auto"
            Horizontal axis (see :meth:`plot`).

        Returns
        -------
        display : StrengthCurveDisplay
        """
        res = search.cv_results_
        if f"param_{param_name}" not in res:
            searched = [k[len("param_"):] for k in res if k.startswith("param_")]
            raise ValueError(
                f"StrengthCurveDisplay.from_search: the search has no parameter "
                f"{param_name!r}; it searched {searched}. Pass param_name=."
            )
        values = np.asarray(res[f"param_{param_name}"], dtype=float)
        if len(np.unique(values)) != len(values):
            raise ValueError(
                f"StrengthCurveDisplay.from_search: the search varies other "
                f"parameters besides {param_name!r}, so each value has several "
                "scores; search over one parameter."
            )
        scoring = search.scoring
        if isinstance(scoring, (dict, list, tuple, set)):
            names = list(scoring)
            metric = search.refit if isinstance(search.refit, str) else names[0]
            key = f"mean_test_{metric}"
            scorer = scoring[metric] if isinstance(scoring, dict) else metric
        else:
            key, scorer = "mean_test_score", scoring
        acc_key = "mean_test_accuracy"
        mean = res[acc_key] if acc_key in res and acc_key != key else None
        disp = cls(values, res[key], mean, param_name=param_name,
                   score_name=_scorer_name(scorer))
        return disp.plot(ax=ax, x=x) if plot else disp
