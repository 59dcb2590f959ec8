"""RR-ClArC at the last layer: refit the head with ``lam * ||W v||^2``."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._core.groups import missing_spurious_message
from .._core.template import (
    MAX_ITER,
    TOL,
    LastLayerClassifier,
    RefitProblem,
    class_weights,
    head_start,
)
from ..concepts.probe import SpuriousProbe
from ..exceptions import MissingSpuriousError

__all__ = ["RRClArCClassifier"]


class RRClArCClassifier(LastLayerClassifier):
    """RR-ClArC at the last layer: refit the head with ``lam * ||W v||^2``.

    Right-Reason ClArC penalises the gradient of the model's output along the
    concept direction ``v``. For a linear head on the embeddings that gradient
    is ``W v``, so the method is a head refit: a logistic regression on the
    embeddings minimising::

        mean_i CE(y_i, W z_i + b) + ||W||^2 / (2 C n) + lam * sum_v ||W v||^2

    over the orthonormal directions ``v`` of a :class:`SpuriousProbe`,
    warm-started from the original head (``head``), weighted like
    scikit-learn's ``LogisticRegression(C, class_weight)`` (``n`` is the sum of
    the sample weights). ``lam = 0`` is plain L2 logistic regression; as ``lam``
    grows, ``W v`` goes to 0 and the head ignores the concept. For two classes
    ``W`` is the single row of scikit-learn's convention (the logit
    difference).

    Equivalence: with ``alpha = 1 / (C n)``, the penalty is exactly L2 logistic
    regression on embeddings whose component along every ``v`` is shrunk by the
    factor ``a = (1 + 2 lam / alpha) ** -1/2``, i.e.
    ``SpuriousProbe(strength=1 - a)`` followed by ``LogisticRegression(C)``,
    with the shrinkage folded into the weights (``W = W' S``); see
    :attr:`equivalent_strength_`. A large ``lam`` is the full projection
    (``strength=1``).

    Parameters
    ----------
    probe : SpuriousProbe or FrozenEstimator, default=None
        Where the directions come from. An unfitted probe is cloned and fitted
        on the data given to :meth:`fit` (with ``spurious``, or in the
        annotation-free mode with this classifier's ``head``). A fitted probe
        wrapped in :class:`sklearn.frozen.FrozenEstimator` is used as is: fit it
        on held-out data with the attribute (where groups are balanced), then
        refit the head on the training data. ``None`` is ``SpuriousProbe()``.
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The original last layer, the solver's starting point. ``None`` starts
        from zeros (the solution is the same, the fit takes longer).
    lam : float, default=1.0
        Strength of the RR-ClArC penalty. Its scale is that of the mean
        cross-entropy: a useful grid spans several decades around
        ``1 / var(z . v)``.
    C : float, default=1.0
        Inverse L2 regularisation strength, as in ``LogisticRegression``.
    class_weight : dict, "balanced" or None, default=None
        Class weights, as in ``LogisticRegression``.
    max_iter : int, default=2000
        Maximum solver iterations (raw embeddings are not standardised, so the
        solver may need more than for standardised ones).
    tol : float, default=1e-4
        Solver tolerance: stop when no gradient entry exceeds it.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Refit weights, acting on raw embeddings.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Refit intercepts.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    probe_ : SpuriousProbe
        The fitted probe whose :attr:`~SpuriousProbe.directions_` are penalised.
    head_sensitivity_ : ndarray of shape (n_outputs, n_directions)
        ``coef_ @ probe_.directions_.T``: what the penalty drives to zero.
    equivalent_strength_ : float
        The ``SpuriousProbe`` strength whose projection, followed by L2 logistic
        regression, gives the same head.
    n_iter_ : int
        Solver iterations.
    n_features_in_ : int
        Number of embedding dimensions.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Defined when ``X`` has string column names.

    See Also
    --------
    SpuriousProbe : The concept directions, their diagnostics and projection.
    DFRClassifier : Group-balanced last-layer retraining.

    References
    ----------
    .. [1] M. Dreyer, F. Pahde, C. J. Anders, W. Samek, S. Lapuschkin, "From Hope
       to Safety: Unlearning Biases of Deep Models via Gradient Penalization in
       Latent Space", AAAI 2024 (arXiv:2308.09437, 2023).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import RRClArCClassifier, SpuriousProbe
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> s = np.where(rng.random(400) < .9, y, 1 - y)  # attribute agrees with y 90%
    >>> X = np.c_[y + rng.normal(0, 1, 400), s + rng.normal(0, .1, 400)]
    >>> plain = RRClArCClassifier(lam=0).fit(X, y, spurious=s)
    >>> rr = RRClArCClassifier(lam=100).fit(X, y, spurious=s)
    >>> plain.head_sensitivity_.round(1)  # W v: the head leans on the attribute
    array([[4.]])
    >>> bool(abs(rr.head_sensitivity_[0, 0]) < 1e-3)
    True
    """

    _fit_on = "training or validation"
    _label_free = False  # the directions come from `spurious` unless `head=` is given
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "head": "no_validation",
        "probe": [HasMethods(["fit", "transform"]), None],
        "lam": [Interval(Real, 0, None, closed="left")],
        "C": [Interval(Real, 0, None, closed="neither")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, *, head=None, probe=None, lam=1.0, C=1.0, class_weight=None,
                 max_iter=MAX_ITER, tol=TOL):
        self.head = head
        self.probe = probe
        self.lam = lam
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    def _fitted_probe(self, X, y, s):
        probe = SpuriousProbe() if self.probe is None else self.probe
        if isinstance(probe, FrozenEstimator):
            inner = probe.estimator
            check_is_fitted(inner)
        else:
            inner = clone(probe)
            no_head = getattr(inner, "head", None) is None
            if s is None and no_head and self.head is not None:
                inner.set_params(head=self.head)
            try:
                inner.fit(X, y, spurious=s)
            except MissingSpuriousError:
                raise MissingSpuriousError(
                    missing_spurious_message("RRClArCClassifier")
                    + " Or pass a fitted probe as `probe=FrozenEstimator(probe)`, or "
                    "`head=` for the annotation-free directions."
                ) from None
        if not hasattr(inner, "directions_"):
            raise TypeError(
                "RRClArCClassifier: probe must be a SpuriousProbe (an object with "
                f"`directions_` once fitted), got {type(inner).__name__}."
            )
        if inner.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"RRClArCClassifier: the probe was fitted on {inner.n_features_in_} "
                f"features but X has {X.shape[1]}."
            )
        return inner

    def _refit_problem(self, ctx):
        self.probe_ = self._fitted_probe(ctx.X, ctx.y, ctx.spurious)
        X = ctx.X
        V = self.probe_.directions_.astype(X.dtype)
        weights = class_weights(ctx, self.class_weight)
        total = X.shape[0] if weights is None else float(weights.sum())
        # Solved in the equivalent form (see the class docstring): L2 logistic
        # regression on P z, P = I - (1 - a) V^T V, then W = W' P. Penalising
        # W V^T directly puts its curvature 2 lam into the solver's step size, so
        # the iterations would grow like sqrt(lam); here they do not. It costs
        # one copy of X (the shrunk embeddings).
        a = float(1 / np.sqrt(1 + 2 * self.lam * self.C * total))
        shrunk = self.lam > 0 and V.shape[0] > 0
        operand = X
        if shrunk:
            operand = (X @ V.T) @ (X.dtype.type(a - 1) * V)
            operand += X
        coef_init, intercept_init = head_start(ctx)
        if coef_init is not None and shrunk:
            # Start from the original head with its concept component removed.
            coef_init = coef_init - (coef_init @ V.T.astype(coef_init.dtype)) @ V
        ctx.shared["shrink"] = (V, a) if shrunk else None
        return RefitProblem(X=operand, weights=weights, C=self.C, coef_init=coef_init,
                            intercept_init=intercept_init)

    def _finish(self, ctx, coef, intercept):
        if ctx.shared.get("shrink") is not None:
            V, a = ctx.shared["shrink"]
            coef = coef - coef.dtype.type(1 - a) * ((coef @ V.T) @ V)
        return coef, intercept

    def _after_fit(self, ctx):
        V = self.probe_.directions_
        self.head_sensitivity_ = self.coef_.astype(np.float64) @ V.T.astype(np.float64)
        shrink = ctx.shared.get("shrink")
        self.equivalent_strength_ = 0.0 if shrink is None else 1 - shrink[1]
