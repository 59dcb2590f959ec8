"""Group inference without group labels: pseudo-groups within every class.

Within each class: ``"discriminant"``, the head's predicted classes refined
by EM of a Gaussian mixture with one shared covariance (the head's mistakes,
whitened); ``"errors"``, the head's mistakes against its
successes (JTT's error set); ``"direction"``, the side of the class's error
direction ``mean(X | wrong) - mean(X | right)`` a sample falls on (the
annotation-free direction of :class:`~sklearn_spur.SpuriousProbe`);
``"cluster"``, a Gaussian mixture on a PCA of the class's embeddings, its size
chosen by BIC (GEORGE, Domino). The pseudo attribute is usable as ``spurious`` anywhere, and
:func:`make_inferred_group_scorer` turns it into a label-free ``scoring=``.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core.base import FLOAT_DTYPES, _check_X_form
from .._core.evidence import head_evidence
from .._core.groups import check_labels, host_array
from .._core.heads import resolve_head
from ..methods._neuron_deltas import _LabelFreeScorer
from ._discriminant import (
    DISCRIMINANT_MAX_ITER,
    auto_method,
    error_directions,
    fit_discriminant,
    predict_components,
)

__all__ = ["GroupInferrer", "infer_groups", "make_inferred_group_scorer"]

METHODS = ("discriminant", "errors", "direction", "cluster")


class GroupInferrer(BaseEstimator):
    """Infer pseudo-groups within every class from a head and the embeddings.

    Fit on held-out data the head was not trained on, then :meth:`predict` the
    pseudo attribute of any split: an integer per sample, meaningful within
    each class (0: the head's confident majority); pass it as ``spurious=``.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The deployed last layer, whose mistakes point at the minority groups.
        ``None`` fits an L2 logistic regression on ``X`` (its mistakes are then
        training errors, a weak signal).
    method : {"auto", "discriminant", "errors", "direction", "cluster"}, \
default="auto"
        How each class is split (see the module's description).
        ``"discriminant"``: every class's samples start in the component of
        the class the head predicts for them; then EM of a Gaussian mixture
        within every class, the (class, component) means and one pooled
        within-component covariance (shrunk by ``shrinkage``) giving linear
        discriminants (priors included), until the posteriors settle; each
        sample goes to its most probable component. ``"auto"`` is ``"discriminant"`` unless the head
        makes fewer than 10 mistakes in some class of ``X``, then
        ``"cluster"``. Measured in ``docs/guide/no_group_labels.rst``
        (adjusted Rand index against the true groups, and what the
        pipelines reach).
    max_components : int, default=4
        With ``"cluster"``: mixtures of 1 to ``max_components`` components
        are fitted per class and the one of lowest BIC is kept.
    n_pca : int, default=10
        With ``"cluster"``: dimensions of the per-class PCA the mixture sees.
    shrinkage : float in (0, 1], default=0.1
        With ``"discriminant"``: weight of the identity (times the mean
        variance) in the pooled covariance. Measured: 0.05 to 0.15 recover
        the attribute of the WaterDigits embeddings; 0.3 drifts on two seeds
        of five.
    random_state : int, RandomState instance or None, default=None
        Seeds the mixtures (and the ERM head when ``head=None``).

    Attributes
    ----------
    method_ : str
        The method used (``"auto"`` resolved).
    classes_ : ndarray of shape (n_classes,)
        Class labels (the head's).
    directions_ : ndarray of shape (n_classes, n_features)
        With ``"direction"``: each class's error direction (0 where a class
        has no mistakes or no successes).
    thresholds_ : ndarray of shape (n_classes,)
        With ``"direction"``: the midpoint of the projections of the two means.
    mixtures_ : list
        With ``"cluster"``: per class, ``((pca, scale), mixture, order)``
        (``order``: component to pseudo value, most confident first).
    discriminant_ : Discriminant
        With ``"discriminant"``: the (class, component) discriminants
        (``coef``, ``intercept``, ``center``, ``order``).
    n_iter_ : int
        With ``"discriminant"``: EM iterations run (at most 100).
    n_groups_ : ndarray of shape (n_classes,)
        Pseudo values per class on the fitting data.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    infer_groups : Fit and predict on the same data, in one call.
    make_inferred_group_scorer : Worst accuracy over inferred groups, as a scorer.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import GroupInferrer
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 600); s = np.where(rng.random(600) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .8, 600), s + rng.normal(0, .1, 600)]
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))  # leans on the attribute
    >>> inferrer = GroupInferrer(head=head, method="direction").fit(X, y)
    >>> pseudo = inferrer.predict(X, y)
    >>> bool(np.mean(pseudo == (s != y)) > 0.9)  # the minority groups, found
    True
    """

    _parameter_constraints: dict = {
        "head": "no_validation",
        "method": [StrOptions({"auto", *METHODS})],
        "max_components": [Interval(Integral, 1, None, closed="left")],
        "n_pca": [Interval(Integral, 1, None, closed="left")],
        "shrinkage": [Interval(Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, head=None, method="auto", max_components=4, n_pca=10,
                 shrinkage=0.1, random_state=None):
        self.head = head
        self.method = method
        self.max_components = max_components
        self.n_pca = n_pca
        self.shrinkage = shrinkage
        self.random_state = random_state

    def _validate(self, X, y, reset):
        who = type(self).__name__
        X = host_array(X)
        _check_X_form(X, who)
        X, y = validate_data(self, X, host_array(y), dtype=FLOAT_DTYPES, reset=reset)
        check_labels(y, "y")
        check_classification_targets(y)
        return X, y

    def _evidence(self, X, y):
        y_idx = self._head.class_index(y, who=type(self).__name__)
        return y_idx, head_evidence(self._head, X, y_idx)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Learn how every class splits, from the head's evidence on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out embeddings.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted inferrer.
        """
        self._fit(X, y)
        return self

    def _fit(self, X, y):
        """Fit, and return the pseudo attribute of the fitting data."""
        X, y = self._validate(X, y, reset=True)
        rs = check_random_state(self.random_state)
        self._head = resolve_head(self.head, X, y, who=type(self).__name__,
                                  random_state=self.random_state)
        self.classes_ = self._head.classes
        y_idx, ev = self._evidence(X, y)
        n_classes = len(self.classes_)
        method = self.method
        if method == "auto":
            method = auto_method(y_idx, ev.wrong, n_classes)
        self.method_ = method
        pseudo = None
        if method == "discriminant":  # its labels are those of the fitted model
            pseudo, self.discriminant_, self.n_iter_ = fit_discriminant(
                X, y_idx, ev.pred, ev.proba_true, n_classes,
                shrinkage=self.shrinkage, max_iter=DISCRIMINANT_MAX_ITER)
        elif method == "direction":
            self.directions_, self.thresholds_ = error_directions(
                X, y_idx, ev.wrong, n_classes)
        elif method == "cluster":
            self.mixtures_ = [
                self._fit_mixture(X[y_idx == c], ev.proba_true[y_idx == c], rs)
                for c in range(n_classes)]
        if pseudo is None:
            pseudo = self._infer(X, y_idx, ev)
        self.n_groups_ = np.array([len(np.unique(pseudo[y_idx == c]))
                                   for c in range(n_classes)])
        return pseudo

    def _fit_mixture(self, Xc, proba, rs):
        if len(Xc) < 2:
            return None
        n_pca = min(self.n_pca, Xc.shape[1], len(Xc) - 1)
        Xc = Xc.astype(np.float64)
        pca = PCA(n_pca, random_state=rs.randint(2**31 - 1)).fit(Xc)
        scale = np.sqrt(max(pca.explained_variance_[0], 1e-300))  # X in any unit
        Zc = pca.transform(Xc) / scale
        best, best_bic = None, np.inf
        for k in range(1, min(self.max_components, len(Xc)) + 1):
            gm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-4,
                                 n_init=1, random_state=rs.randint(2**31 - 1)).fit(Zc)
            bic = gm.bic(Zc)
            if bic < best_bic:
                best, best_bic = gm, bic
        labels = best.predict(Zc)
        # pseudo value 0: the component where the head is most confident
        conf = np.array([proba[labels == j].mean() if (labels == j).any() else -1.0
                         for j in range(best.n_components)])
        order = np.empty(best.n_components, np.intp)
        order[np.argsort(-conf, kind="stable")] = np.arange(best.n_components)
        return (pca, scale), best, order

    def _infer(self, X, y_idx, ev):
        pseudo = np.zeros(len(y_idx), np.intp)
        if self.method_ == "errors":
            return ev.wrong.astype(np.intp)
        if self.method_ == "discriminant":
            return predict_components(self.discriminant_, X, y_idx)
        for c in range(len(self.classes_)):  # classes, not samples
            rows = np.flatnonzero(y_idx == c)
            if rows.size == 0:
                continue
            if self.method_ == "direction":
                proj = X[rows] @ self.directions_[c]
                pseudo[rows] = (proj > self.thresholds_[c]) & self.directions_[c].any()
            elif self.mixtures_[c] is not None:
                (pca, scale), gm, order = self.mixtures_[c]
                Z = pca.transform(X[rows].astype(float)) / scale
                pseudo[rows] = order[gm.predict(Z)]
        return pseudo

    def predict(self, X, y=None):
        """The pseudo attribute of every sample of ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,), default=None
            Class labels (groups are within classes). ``None``: the head's
            predictions (then ``"errors"`` gives 0 everywhere).

        Returns
        -------
        spurious : ndarray of shape (n_samples,) of int
            The pseudo attribute, to pass as ``spurious=``.
        """
        check_is_fitted(self)
        if y is None:
            X = validate_data(self, host_array(X), dtype=FLOAT_DTYPES, reset=False)
            y = self._head.predict(X)
        X, y = self._validate(X, y, reset=False)
        y_idx, ev = self._evidence(X, y)
        return self._infer(X, y_idx, ev)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y):
        """Fit on ``(X, y)`` and return its pseudo attribute.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out embeddings.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        spurious : ndarray of shape (n_samples,) of int
        """
        return self._fit(X, y)


def infer_groups(X, y, *, head, method="auto", random_state=None):
    """Pseudo-groups within every class, without group labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Held-out embeddings (not the head's training data).
    y : array-like of shape (n_samples,)
        Class labels.
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None
        The deployed last layer (see :class:`GroupInferrer`).
    method : {"auto", "discriminant", "errors", "direction", "cluster"}, \
default="auto"
        How each class is split (see :class:`GroupInferrer`).
    random_state : int, RandomState instance or None, default=None
        Seeds the mixtures of ``"cluster"``.

    Returns
    -------
    spurious : ndarray of shape (n_samples,) of int
        The pseudo attribute, usable as ``spurious=`` anywhere.

    Examples
    --------
    Group-balanced retraining on inferred groups, with no group label at all:

    >>> import numpy as np
    >>> from sklearn_spur import DFRClassifier, infer_groups
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 600); s = np.where(rng.random(600) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .8, 600), s + rng.normal(0, .1, 600)]
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))
    >>> pseudo = infer_groups(X, y, head=head)
    >>> dfr = DFRClassifier(random_state=0).fit(X, y, spurious=pseudo)
    >>> bool(abs(dfr.coef_[0, 0]) > abs(dfr.coef_[0, 1]))
    True
    """
    return GroupInferrer(head=head, method=method,
                         random_state=random_state).fit_predict(X, y)


def make_inferred_group_scorer(*, head=None, method="auto", random_state=0):
    """A label-free scorer: worst accuracy over groups inferred on the scoring fold.

    ``scorer(estimator, X, y)`` infers pseudo-groups on ``(X, y)`` with the
    original ``head`` (:func:`infer_groups`) and returns the estimator's
    lowest accuracy over them. It requests no metadata, so ``GridSearchCV``
    uses it without ``spurious`` and without metadata routing.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The deployed last layer that defines the groups. ``None`` reads the
        scored estimator's ``head`` parameter (AFR, JTT, NeuronTuner, the
        editor); it must not be None then.
    method : {"auto", "discriminant", "errors", "direction", "cluster"}, \
default="auto"
        See :class:`GroupInferrer`; the estimators' internal selection
        (``selection="inferred"``) uses ``"auto"`` too.
    random_state : int, RandomState instance or None, default=0
        Seeds the mixtures of ``"cluster"`` (fixed, so every candidate is
        scored on the same groups).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_spur import JTTClassifier, make_inferred_group_scorer
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 600); s = np.where(rng.random(600) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .8, 600), s + rng.normal(0, .1, 600)]
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))
    >>> search = GridSearchCV(JTTClassifier(head=head),
    ...                       {"upweight": [1.0, 5.0, 20.0]},
    ...                       scoring=make_inferred_group_scorer(head=head)).fit(X, y)
    >>> search.best_params_["upweight"] > 1
    True
    """
    GroupInferrer(method=method)._validate_params()

    def score(estimator, X, y):
        h = getattr(estimator, "head", None) if head is None else head
        if h is None:
            raise ValueError(
                "make_inferred_group_scorer: no head to infer the groups with; pass "
                "`head=` to make_inferred_group_scorer (the deployed last layer).")
        X, y = host_array(X), np.asarray(host_array(y))
        pseudo = infer_groups(X, y, head=h, method=method, random_state=random_state)
        pred = np.asarray(estimator.predict(X))
        codes = np.unique(np.c_[np.unique(y, return_inverse=True)[1].ravel(), pseudo],
                          axis=0, return_inverse=True)[1].ravel()
        correct = (pred == y).astype(np.float64)
        return float((np.bincount(codes, correct) / np.bincount(codes)).min())

    return _LabelFreeScorer(score, f"make_inferred_group_scorer(method={method!r})")
