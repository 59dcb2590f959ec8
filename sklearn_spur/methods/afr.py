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

AFR_GAMMAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
AFR_LAMS = (0.01, 0.1)


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
    gamma : float or None, default=None
        Sharpness of the reweighting; 0 is class-balanced retraining. ``None``
        tunes it over ``gammas`` (see ``selection``).
    gammas : array-like of float, default=(0, 0.5, 1, 2, 3, 4)
        Candidates for ``gamma`` when it is None (larger values over-correct:
        the refit leans on the opposite of the shortcut).
    lam : float or None, default=None
        Strength of the pull toward the original head; ``None`` tunes it over
        ``lams``.
    lams : array-like of float, default=(0.01, 0.1)
        Candidates for ``lam`` when it is None.
    selection : {"inferred", "worst_class"}, default="inferred"
        How the candidates are compared, each fitted on one half of ``X`` and
        scored on the other, without group labels: worst accuracy over
        pseudo-groups inferred with the head (a clear per-class mixture, else
        its right / wrong split; see :func:`~sklearn_spur.infer_groups`), or
        worst-class accuracy (blind to
        minority groups on held-out data drawn like training). With
        ``spurious`` (routed to ``fit``) the true groups are used instead.
    max_iter : int, default=2000
        Maximum solver iterations.
    tol : float, default=1e-4
        Solver tolerance (max-norm of the gradient).
    random_state : int, RandomState instance or None, default=None
        Controls the selection halves.
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) of the candidate fits; 2: it stays.

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
    gamma_, lam_ : float
        The values used (chosen, or given).
    selection_scores_ : dict
        ``{((gamma, g), (lam, l)): held-out score}`` of every candidate (empty
        when both are given).
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
    >>> afr = AFRClassifier(head=head, random_state=0).fit(X, y)  # no group label
    >>> afr.gamma_, afr.lam_
    (4.0, 0.01)
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
        **LastLayerClassifier._selection_constraints,
        **LastLayerClassifier._verbose_constraints,
        "gamma": [Interval(Real, 0, None, closed="left"), None],
        "gammas": ["array-like"],
        "lam": [Interval(Real, 0, None, closed="left"), None],
        "lams": ["array-like"],
        "random_state": ["random_state"],
    }
    __metadata_request__fit = {"spurious": False}

    def __init__(self, *, head=None, gamma=None, gammas=AFR_GAMMAS, lam=None,
                 lams=AFR_LAMS, selection="inferred", max_iter=MAX_ITER, tol=TOL,
                 random_state=None, verbose=0):
        self.head = head
        self.gamma = gamma
        self.gammas = gammas
        self.lam = lam
        self.lams = lams
        self.selection = selection
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _check_context(self, ctx):
        super()._check_context(ctx)
        for name in ("gammas", "lams"):
            if getattr(self, name[:-1]) is None:
                _check_grid(self, name)

    def _selection_grid(self, ctx):
        gammas = [self.gamma] if self.gamma is not None else _grid(self.gammas)
        lams = [self.lam] if self.lam is not None else _grid(self.lams)
        return [{"gamma": g, "lam": lam} for lam in lams for g in gammas]

    def _refit_problem(self, ctx, gamma=None, lam=None):
        p = ctx.evidence.proba_true.astype(np.float64)
        # exp(-gamma p) relative to each class's smallest exponent: no underflow.
        w = np.exp(-gamma * (p - p.max()))
        totals = np.bincount(ctx.y_idx, weights=w, minlength=ctx.n_classes)
        w = w / (totals[ctx.y_idx] * ctx.n_classes)
        ctx.shared["weights"] = w
        W0, b0 = head_start(ctx)
        return RefitProblem(weights=w.astype(ctx.X.dtype),
                            reg=lam, anchor=W0,
                            coef_init=W0, intercept_init=b0)

    def _after_fit(self, ctx):
        self.sample_weight_ = ctx.shared["weights"]
        self.gamma_ = float(self.best_params_["gamma"])
        self.lam_ = float(self.best_params_["lam"])


def _grid(values):
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _check_grid(est, name):
    """A grid of non-negative, finite values, or a ValueError naming it."""
    values = np.asarray(getattr(est, name), dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError(
            f"{type(est).__name__}: {name} must hold non-negative, finite values; got "
            f"{values.tolist()[:10]}. Pass a grid, or fix the value with "
            f"`{name[:-1]}=`.")
