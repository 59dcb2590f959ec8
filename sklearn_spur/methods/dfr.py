"""Deep Feature Reweighting (DFR) and the ERM baseline."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._core.base import LinearSpurClassifier
from .._core.groups import (
    check_group_sizes,
    encode_groups,
    group_balanced_indices,
)
from .._core.solver import fit_logistic, standardize_stats

__all__ = ["DFRClassifier"]

DFR_C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


class DFRClassifier(LinearSpurClassifier):
    """Deep Feature Reweighting: retrain the last layer on group-balanced held-out data.

    Fit it on held-out embeddings *with* group labels (a validation split the
    backbone was not trained on). Following the reference recipe, it

    1. standardises the embeddings (mean and scale of the whole held-out set);
    2. chooses ``C`` from ``C_grid`` by worst-group accuracy on one half of the
       held-out set, after fitting an L1 logistic regression on a group-balanced
       subsample of the other half (halves stratified by group);
    3. fits ``n_fits`` L1 logistic regressions, each on a fresh group-balanced
       subsample (every group downsampled to the smallest group's size) of the
       whole held-out set, and averages their ``coef_`` and ``intercept_``.

    The standardisation is folded into ``coef_`` and ``intercept_``, so the
    result is one linear layer on raw embeddings (:meth:`to_torch`). All
    ``len(C_grid)`` tuning fits run as one batched problem, then all
    ``n_fits`` final fits as another, with float32 math for float32 input and
    without copying ``X`` (see ``benchmarks/bench_dfr.py`` for the speed-up over
    fitting them one by one with liblinear).

    Parameters
    ----------
    C_grid : array-like of float, default=(1, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
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
    tuning_scores_ : dict
        ``{C: worst-group accuracy on the tuning half}`` (empty when ``C`` is given).
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
    >>> dfr.C_ in dfr.C_grid
    True
    >>> bool(abs(dfr.coef_[0, 0]) > abs(dfr.coef_[0, 1]))
    True
    """

    _parameter_constraints: dict = {
        "C_grid": ["array-like"],
        "C": [Interval(Real, 0, None, closed="neither"), None],
        "n_fits": [Interval(Integral, 1, None, closed="left")],
        "penalty": [StrOptions({"l1", "l2"})],
        "standardize": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, C_grid=DFR_C_GRID, C=None, n_fits=20, penalty="l1",
                 standardize=True, max_iter=2000, tol=1e-3, random_state=None):
        self.C_grid = C_grid
        self.C = C
        self.n_fits = n_fits
        self.penalty = penalty
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _solve(self, X, y_idx, weights, Cs, mean, scale, init=None):
        """Batched fits, one per row of ``weights`` (or per C), on the rows in use."""
        weights = np.atleast_2d(weights)
        rows = np.flatnonzero(weights.any(axis=0))
        if len(rows) < 0.9 * X.shape[0]:  # fit on the rows in use: fewer passes' worth
            X, y_idx, weights = X[rows], y_idx[rows], weights[:, rows]
        lam = 1.0 / (np.asarray(Cs, dtype=np.float64) * weights.sum(axis=1))
        key = "l1" if self.penalty == "l1" else "l2"
        coef_init, intercept_init = (None, None) if init is None else init
        return fit_logistic(X, y_idx, len(self.classes_), weights=weights,
                            **{key: lam}, mean=mean, scale=scale, coef_init=coef_init,
                            intercept_init=intercept_init, max_iter=self.max_iter,
                            tol=self.tol)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, spurious=None):
        """Fit on held-out embeddings with group labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out embeddings (not the backbone's training data).
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
            Spurious attribute; required. Routed by metadata routing.

        Returns
        -------
        self : DFRClassifier
        """
        X, y, s = self._validate_fit_inputs(X, y, spurious, spurious_required=True)
        C_grid = np.asarray(self.C_grid, dtype=np.float64).ravel()
        if self.C is None and (C_grid.size == 0 or np.any(C_grid <= 0)):
            raise ValueError("DFRClassifier: C_grid must hold positive values.")
        rng = check_random_state(self.random_state)
        gen = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        groups = encode_groups(y, s)
        check_group_sizes(groups, 2 if self.C is None else 1, "DFRClassifier")
        mean, scale = standardize_stats(X) if self.standardize else (None, None)

        self.tuning_scores_ = {}
        init = None
        if self.C is None:
            self.C_, init = self._tune_C(X, y_idx, groups, C_grid, gen, mean, scale)
        else:
            self.C_ = float(self.C)

        draws = group_balanced_indices(groups.codes, gen, n_draws=self.n_fits)
        weights = np.zeros((self.n_fits, X.shape[0]), X.dtype)
        np.put_along_axis(weights, draws, 1, axis=1)
        # Warm start: every final fit starts from the tuning fit at the chosen C.
        fit = self._solve(X, y_idx, weights, [self.C_] * self.n_fits, mean, scale, init)
        self.coef_ = fit.coef.mean(axis=0)
        self.intercept_ = fit.intercept.mean(axis=0)
        self.n_iter_ = fit.n_iter
        return self

    def _tune_C(self, X, y_idx, groups, C_grid, gen, mean, scale):
        # Halves stratified by group, so both halves hold every group.
        half_a = np.zeros(X.shape[0], bool)
        for g in np.unique(groups.codes):
            members = gen.permutation(np.flatnonzero(groups.codes == g))
            half_a[members[len(members) // 2:]] = True
        idx_a = np.flatnonzero(half_a)
        sub = idx_a[group_balanced_indices(groups.codes[idx_a], gen)]
        weights = np.zeros(X.shape[0], X.dtype)
        weights[sub] = 1
        fit = self._solve(X, y_idx, weights, C_grid, mean, scale)
        idx_b = np.flatnonzero(~half_a)
        Xb, codes_b = X[idx_b], groups.codes[idx_b]
        scores = np.einsum("nd,bkd->nbk", Xb, fit.coef) + fit.intercept[None]
        pred = (scores[..., 0] > 0).astype(int) if scores.shape[2] == 1 else scores.argmax(2)
        correct = pred == y_idx[idx_b][:, None]  # (n_b, n_C)
        present = np.unique(codes_b)
        wga = np.min([correct[codes_b == g].mean(axis=0) for g in present], axis=0)
        self.tuning_scores_ = dict(zip(C_grid.tolist(), wga.tolist()))
        best = int(np.argmax(wga))  # first C of the grid among ties
        return float(C_grid[best]), (fit.coef[best], fit.intercept[best])
