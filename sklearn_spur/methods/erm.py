"""The baseline: the original head, or a logistic regression fit by ERM."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._core.base import LinearSpurClassifier
from .._core.groups import (
    balanced_weights,
)
from .._core.heads import resolve_head
from .._core.solver import fit_logistic

__all__ = ["ERMClassifier", "class_weights"]


class ERMClassifier(LinearSpurClassifier):
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
        Solver tolerance.

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

    _parameter_constraints: dict = {
        "head": "no_validation",
        "C": [Interval(Real, 0, None, closed="neither")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
    }
    __metadata_request__fit = {"spurious": False}

    def __init__(self, head=None, *, C=1.0, class_weight=None, max_iter=2000, tol=1e-4):
        self.head = head
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, spurious=None):
        """Check the given head, or fit one by ERM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : ignored
            Accepted (not requested) so the baseline sits in the same searches.

        Returns
        -------
        self : ERMClassifier
        """
        X, y, _ = self._validate_fit_inputs(X, y, spurious)
        if self.head is not None:
            head = resolve_head(self.head, X, y, who="ERMClassifier")
            self.classes_ = head.classes
            self.coef_, self.intercept_ = head.coef.copy(), head.intercept.copy()
            self.n_iter_ = 0
            return self
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        weights = class_weights(y_idx, self.classes_, self.class_weight, X.dtype)
        n = X.shape[0]
        fit = fit_logistic(X, y_idx, len(self.classes_), weights=weights,
                           l2=1.0 / (self.C * n), max_iter=self.max_iter, tol=self.tol)
        self.coef_, self.intercept_ = fit.coef[0], fit.intercept[0]
        self.n_iter_ = fit.n_iter
        return self


def class_weights(y_idx, classes, class_weight, dtype):
    """Per-sample weights for ``class_weight`` (None, "balanced" or a dict)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        return balanced_weights(y_idx).astype(dtype)
    per_class = np.array([class_weight.get(c, 1.0) for c in classes.tolist()], dtype=dtype)
    return per_class[y_idx]
