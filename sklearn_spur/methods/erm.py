"""The baseline: the original head, or a logistic regression fit by ERM."""

from __future__ import annotations

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions

from .._core.template import (
    MAX_ITER,
    TOL,
    LastLayerClassifier,
    RefitProblem,
    class_weights,
)

__all__ = ["ERMClassifier"]


class ERMClassifier(LastLayerClassifier):
    """The baseline: the original head, or a logistic regression fit by ERM.

    With ``head`` given, ``fit`` only checks it against the data and exposes it
    as a scikit-learn classifier (so the original model can be scored, grid
    searched and exported like every other method). With ``head=None`` it fits
    an L2 logistic regression on the given embeddings (ERM).

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer. Wrap a fitted scikit-learn classifier in
        :class:`sklearn.frozen.FrozenEstimator` so that cloning keeps it fitted.
    C : float, default=1.0
        Inverse L2 regularisation strength when fitting (``head=None``).
    class_weight : dict, "balanced" or None, default=None
        Weights per class when fitting; ``"balanced"`` gives every class the
        same total weight.
    max_iter : int, default=2000
        Maximum solver iterations.
    tol : float, default=1e-4
        Solver tolerance (max-norm of the gradient).

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        The head's weights.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        The head's biases.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_iter_ : int
        Solver iterations (0 when ``head`` is given).
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    DFRClassifier : Group-balanced last-layer retraining.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import ERMClassifier
    >>> X = np.array([[0., 1.], [1., 0.], [0., 2.], [2., 0.]]); y = [0, 1, 0, 1]
    >>> ERMClassifier(head=(np.array([[1., -1.]]), np.array([0.]))).fit(X, y).predict(X)
    array([0, 1, 0, 1])
    """

    _label_free = True
    _fit_on = "training"
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "head": "no_validation",
        "C": [Interval(Real, 0, None, closed="neither")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }
    __metadata_request__fit = {"spurious": False}

    def __init__(self, *, head=None, C=1.0, class_weight=None, max_iter=MAX_ITER,
                 tol=TOL):
        self.head = head
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    def _check_context(self, ctx):
        if ctx.head is None:  # a given head is kept, whatever classes y shows
            super()._check_context(ctx)

    def _refit_problem(self, ctx):
        if ctx.head is not None:
            return None  # the original head, as an estimator
        return RefitProblem(weights=class_weights(ctx, self.class_weight), C=self.C)
