"""AFR: the last layer retrained on held-out data, the head's hard samples upweighted."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from .._core.template import (
    MAX_ITER,
    TOL,
    LastLayerClassifier,
    RefitProblem,
    head_start,
)

__all__ = ["AFRClassifier"]


class AFRClassifier(LastLayerClassifier):
    """Automatic Feature Reweighting: retrain the head on the samples it finds hard.

    Fit on held-out embeddings (not the data the head was trained on), with
    class labels only. Every sample gets the weight ``exp(-gamma * p(y | x))``,
    ``p`` the original head's probability of the true class, normalised so that
    every class has the same total weight; the last layer is refit by minimising::

        sum_i w_i CE(y_i, W x_i + b) / sum_i w_i + lam * ||W - W_head||^2

    from the original head ``(W_head, b_head)`` (the intercept is not
    penalised). Samples the head gets right with confidence (the majority
    groups, which the shortcut explains) weigh little; its mistakes (the
    minority groups) weigh most.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer, whose probabilities set the weights and toward
        which the refit is pulled. ``None`` fits an ERM head on ``X`` first (a
        weak stand-in: a head fitted on ``X`` makes few mistakes there).
    gamma : float, default=1.0
        Sharpness of the reweighting; 0 is class-balanced retraining.
    lam : float, default=0.01
        Strength of the pull toward the original head.
    max_iter : int, default=2000
        Maximum solver iterations.
    tol : float, default=1e-4
        Solver tolerance (max-norm of the gradient).

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Refit weights.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Refit biases.
    classes_ : ndarray of shape (n_classes,)
        Class labels (the head's).
    sample_weight_ : ndarray of shape (n_samples,)
        The AFR weights of the fitting samples (each class sums to 1 / n_classes).
    n_iter_ : int
        Solver iterations.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    JTTClassifier : Upweight the head's mistakes by a constant factor.
    DFRClassifier : Group-balanced retraining, with group labels.

    References
    ----------
    .. [1] S. Qiu, A. Potapczynski, P. Izmailov, A. G. Wilson, "Simple and Fast
       Group Robustness by Automatic Feature Reweighting", ICML 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import AFRClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); s = np.where(rng.random(400) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .8, 400), s + rng.normal(0, .1, 400)]
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))  # leans on the attribute
    >>> afr = AFRClassifier(head=head, gamma=4).fit(X, y)
    >>> from sklearn_spur import worst_group_accuracy
    >>> before = (X @ head[0].T + head[1] > 0).ravel().astype(int)
    >>> worst_group_accuracy(y, before, spurious=s)
    0.0
    >>> round(worst_group_accuracy(y, afr.predict(X), spurious=s), 2)
    0.67
    """

    _uses_head = "required"
    _label_free = True
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "head": "no_validation",
        "gamma": [Interval(Real, 0, None, closed="left")],
        "lam": [Interval(Real, 0, None, closed="left")],
    }
    __metadata_request__fit = {"spurious": False}

    def __init__(self, *, head=None, gamma=1.0, lam=0.01, max_iter=MAX_ITER, tol=TOL):
        self.head = head
        self.gamma = gamma
        self.lam = lam
        self.max_iter = max_iter
        self.tol = tol

    def _refit_problem(self, ctx, gamma=None, lam=None):
        gamma = self.gamma if gamma is None else gamma
        p = ctx.evidence.proba_true.astype(np.float64)
        # exp(-gamma p) relative to each class's smallest exponent: no underflow.
        w = np.exp(-gamma * (p - p.max()))
        totals = np.bincount(ctx.y_idx, weights=w, minlength=ctx.n_classes)
        w = w / (totals[ctx.y_idx] * ctx.n_classes)
        ctx.shared["weights"] = w
        W0, b0 = head_start(ctx)
        return RefitProblem(weights=w.astype(ctx.X.dtype),
                            reg=self.lam if lam is None else lam, anchor=W0,
                            coef_init=W0, intercept_init=b0)

    def _after_fit(self, ctx):
        self.sample_weight_ = ctx.shared["weights"]
