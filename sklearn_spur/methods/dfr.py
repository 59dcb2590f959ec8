"""Deep Feature Reweighting (DFR): the last layer retrained on group-balanced data."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._core.groups import check_group_sizes, group_balanced_indices
from .._core.solver import standardize_stats
from .._core.template import MAX_ITER, LastLayerClassifier, RefitProblem

__all__ = ["DFRClassifier"]

DFR_CS = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
#: DFR's own tolerance, looser than the template's ``TOL``: its head is an
#: average of group-balanced fits, which differ from each other far more.
DFR_TOL = 1e-3


class DFRClassifier(LastLayerClassifier):
    """Deep Feature Reweighting: retrain the last layer on group-balanced held-out data.

    Fit it on held-out embeddings *with* group labels (a validation split the
    backbone was not trained on). Following the reference recipe, it

    1. standardises the embeddings (mean and scale of the whole held-out set);
    2. chooses ``C`` from ``Cs`` by worst-group accuracy on one half of the
       held-out set, after fitting an L1 logistic regression on a group-balanced
       subsample of the other half (halves stratified by group);
    3. fits ``n_fits`` L1 logistic regressions, each on a fresh group-balanced
       subsample (every group downsampled to the smallest group's size) of the
       whole held-out set, and averages their ``coef_`` and ``intercept_``.

    The standardisation is folded into ``coef_`` and ``intercept_``, so the
    result is one linear layer on raw embeddings (:meth:`to_torch`). All
    ``len(Cs)`` tuning fits run as one batched problem, then all
    ``n_fits`` final fits as another, with float32 math for float32 input and
    without copying ``X`` (see ``benchmarks/bench_dfr.py`` for the speed-up over
    fitting them one by one with liblinear).

    Parameters
    ----------
    Cs : array-like of float, default=(1, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
        Inverse regularisation strengths tried (the reference grid).
    C : float, default=None
        Skip tuning and use this value.
    n_fits : int, default=20
        Number of group-balanced subsamples averaged in the final head.
    penalty : {"l1", "l2"}, default="l1"
        Penalty of the logistic regressions (the reference uses L1).
    standardize : bool, default=True
        Standardise the embeddings first (the reference does).
    max_iter : int, default=2000
        Maximum solver iterations per batch of fits.
    tol : float, default=1e-3
        Solver tolerance on the optimality residual (the gradient, with the L1
        subgradient). The final head is an average over subsamples, which
        differ from each other far more than a tighter tolerance changes each
        fit (checked against the liblinear recipe in the tests and
        ``benchmarks/bench_dfr.py``).
    random_state : int, RandomState instance or None, default=None
        Controls the halves and the subsamples.
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) of the fits: the ``Cs`` (solved as
        one batch) on the tuning half, then the final ``n_fits``; 2: it stays.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Averaged weights, acting on raw embeddings.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Averaged intercepts.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    C_ : float
        The chosen ``C``.
    selection_scores_ : dict
        ``{C: worst-group accuracy on the tuning half}`` (empty when ``C`` is given).
    tuning_scores_ : dict
        Alias of ``selection_scores_``.
    n_iter_ : int
        Solver iterations of the final batch.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    ERMClassifier : The unbalanced baseline.

    References
    ----------
    .. [1] P. Kirichenko, P. Izmailov, A. G. Wilson, "Last Layer Re-Training is
       Sufficient for Robustness to Spurious Correlations", ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import DFRClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); s = rng.integers(0, 2, 400)
    >>> X = np.c_[y + rng.normal(0, .8, 400), s + rng.normal(0, .1, 400)]
    >>> dfr = DFRClassifier(n_fits=5, random_state=0).fit(X, y, spurious=s)
    >>> dfr.C_ in dfr.Cs
    True
    >>> bool(abs(dfr.coef_[0, 0]) > abs(dfr.coef_[0, 1]))
    True
    """

    _needs_group_labels = True
    _uses_head = "no"
    _label_free = False
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "Cs": ["array-like"],
        "C": [Interval(Real, 0, None, closed="neither"), None],
        "n_fits": [Interval(Integral, 1, None, closed="left")],
        "penalty": [StrOptions({"l1", "l2"})],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
        **LastLayerClassifier._verbose_constraints,
    }

    def __init__(self, *, Cs=DFR_CS, C=None, n_fits=20, penalty="l1",
                 standardize=True, max_iter=MAX_ITER, tol=DFR_TOL, random_state=None,
                 verbose=0):
        self.Cs = Cs
        self.C = C
        self.n_fits = n_fits
        self.penalty = penalty
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _check_context(self, ctx):
        super()._check_context(ctx)
        who = type(self).__name__
        if self.C is None:
            Cs = np.asarray(self.Cs, dtype=np.float64).ravel()
            if Cs.size == 0 or not np.all(np.isfinite(Cs) & (Cs > 0)):
                raise ValueError(f"{who}: Cs must hold positive, finite values; got "
                                 f"{np.asarray(self.Cs).ravel().tolist()[:10]}.")
        groups = ctx.groups
        check_group_sizes(groups, 2 if self.C is None else 1, who)
        absent = [groups.label(g) for g in np.flatnonzero(groups.counts == 0)]
        if absent:
            warnings.warn(
                f"{who}: groups {absent[:10]} have no sample in the data DFR is fitted "
                "on, so it cannot balance them and may score below ERM on them. Fit on "
                "held-out data that holds every (class, attribute) group.",
                UserWarning, stacklevel=3)
        # One standardisation for tuning and final fits: the whole held-out set's.
        ctx.shared["stats"] = (standardize_stats(ctx.X) if self.standardize
                               else (None, None))

    def _selection_grid(self, ctx):
        if self.C is not None:
            return None
        return [{"C": float(C)} for C in np.asarray(self.Cs, dtype=np.float64).ravel()]

    def _refit_problem(self, ctx, C=None):
        if ctx.stage == "select":
            # One group-balanced subsample of the fitting half for every C (the
            # reference recipe): the Cs compete on the same data, not on 7 draws.
            drawn = ctx.shared.get("select_draw")
            if drawn is None or drawn[0] is not ctx.X:
                drawn = ctx.shared["select_draw"] = (ctx.X, group_balanced_indices(
                    ctx.groups.codes, ctx.rng, n_draws=1))
            draws = drawn[1]
        else:
            draws = group_balanced_indices(ctx.groups.codes, ctx.rng, n_draws=self.n_fits)
        n_draws = draws.shape[0]
        weights = np.zeros((n_draws, ctx.X.shape[0]), ctx.X.dtype)
        np.put_along_axis(weights, draws, 1, axis=1)
        mean, scale = ctx.shared["stats"]
        return RefitProblem(weights=weights, C=self.C if C is None else C,
                            penalty=self.penalty, mean=mean, scale=scale)

    def _after_fit(self, ctx):
        self.C_ = float(self.best_params_.get("C", self.C))
        self.tuning_scores_ = self.selection_scores_
