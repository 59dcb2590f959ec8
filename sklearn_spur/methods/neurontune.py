"""NeuronTune: silence the units behind a head's shortcut, without group labels.

The original head's mistakes, compared with its successes *within each class*,
show which units the shortcut runs through: a unit whose median activation is
higher on the mistakes than on the successes is one the head uses against the
class. :class:`NeuronTuner` zeroes those units and retrains the last layer,
class-balanced; it needs class labels only, for fitting and (through
:data:`worst_class_scorer` or :data:`neuron_delta_scorer`) for model selection.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_array, check_random_state, metadata_routing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from .._core.base import FLOAT_DTYPES, LinearSpurClassifier
from .._core.groups import balanced_weights
from .._core.heads import resolve_head
from .._core.solver import fit_logistic, standardize_stats
from ..metrics import worst_class_accuracy

__all__ = [
    "NeuronTuner",
    "neuron_deltas",
    "neuron_delta_scorer",
    "worst_class_scorer",
]

# Columns per block when taking medians: bounds the temporary copy of X to
# n_samples x _MEDIAN_BLOCK values whatever the embedding width.
_MEDIAN_BLOCK = 256
# The guard's fits use at most this many samples (its accuracies are estimates).
_GUARD_SAMPLES = 10_000


def neuron_deltas(X, y_idx, wrong, n_classes):
    """Median activation on mistakes minus median on successes, per class and unit.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embeddings.
    y_idx : ndarray of shape (n_samples,) of int
        Class index of every sample, in ``[0, n_classes)``.
    wrong : ndarray of shape (n_samples,) of bool
        Whether the head misclassifies the sample.
    n_classes : int
        Number of classes.

    Returns
    -------
    delta : ndarray of shape (n_classes, n_features), X's dtype
        NaN for a class with no mistakes or no successes (nothing to compare).
    """
    n, d = X.shape
    delta = np.full((n_classes, d), np.nan, dtype=X.dtype)
    for c in range(n_classes):
        rows_w = np.flatnonzero((y_idx == c) & wrong)
        rows_r = np.flatnonzero((y_idx == c) & ~wrong)
        if rows_w.size == 0 or rows_r.size == 0:
            continue
        for j in range(0, d, _MEDIAN_BLOCK):
            cols = slice(j, j + _MEDIAN_BLOCK)
            delta[c, cols] = (np.median(X[rows_w, cols], axis=0)
                              - np.median(X[rows_r, cols], axis=0))
    return delta


class _LabelFreeScorer:
    """A ``scoring=`` callable ``(estimator, X, y)`` that requests no metadata."""

    def __init__(self, func, name):
        self._func = func
        self._name = name

    def __call__(self, estimator, X, y):
        return self._func(estimator, X, y)

    def __repr__(self):
        return self._name

    def get_metadata_routing(self):
        return metadata_routing.MetadataRequest(owner=self._name)


def _neg_delta_sum(estimator, X, y):
    X = check_array(X, dtype=FLOAT_DTYPES)
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    wrong = estimator.predict(X) != np.asarray(y)
    delta = neuron_deltas(X, y_idx.ravel(), wrong, len(classes))
    return -float(np.nansum(np.abs(delta), dtype=np.float64))


def _worst_class(estimator, X, y):
    return worst_class_accuracy(y, estimator.predict(X))


neuron_delta_scorer = _LabelFreeScorer(_neg_delta_sum, "neuron_delta_scorer")
"""Label-free model selection, the NeuronTune paper's criterion.

``scorer(estimator, X, y)`` is minus the sum over classes and units of
``|delta|``, recomputed with the estimator's own predictions on ``X``: a head
whose mistakes look like its successes (no unit separates them) scores highest.
A class with no mistakes, or no successes, adds nothing, so a head that
collapses onto one class also scores well: prefer :data:`worst_class_scorer`
when that can happen, or use both (``scoring={...}``).
"""

worst_class_scorer = _LabelFreeScorer(_worst_class, "worst_class_scorer")
"""Label-free model selection: the lowest per-class accuracy (recall) on ``X``."""


def _class_index(classes, y):
    """Position of every label of ``y`` in ``classes`` (not necessarily sorted)."""
    sorter = np.argsort(classes, kind="stable")
    return sorter[np.searchsorted(classes, y, sorter=sorter)]


def _predict_idx(X, coef, intercept):
    """Class index predicted by a (K, d) head in the solver's convention."""
    scores = X @ coef.T + intercept
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).astype(np.intp)
    return scores.argmax(axis=1)


def _masked(scale, mask):
    """Standardisation scale with the masked units at infinity: the solver's
    implicit ``x / scale`` is then 0 there, so their weights stay exactly 0."""
    return np.where(mask, np.inf, scale).astype(scale.dtype)


def _stratified_subset(y_idx, size, rng):
    """Sorted indices of a class-stratified random subset, None if all fit."""
    n = y_idx.shape[0]
    if n <= size:
        return None
    keep = np.zeros(n, bool)
    for c in np.unique(y_idx):
        members = np.flatnonzero(y_idx == c)
        take = max(1, int(round(size * members.size / n)))
        keep[rng.choice(members, size=min(take, members.size), replace=False)] = True
    return np.flatnonzero(keep)


class NeuronTuner(LinearSpurClassifier):
    """NeuronTune: zero the units behind the head's shortcut, retrain the last layer.

    Annotation-free: fitting and model selection need class labels only.
    Fit it on **held-out** embeddings (a validation split, *not* the data the
    head was trained on, whose mistakes the network has memorised away). It

    1. predicts with the original ``head`` on ``X`` (the identification set);
    2. computes, per class ``c`` and unit ``i``,
       ``delta_[c, i] = median(X[y=c, wrong, i]) - median(X[y=c, right, i])``;
    3. flags the units with ``delta_ > threshold`` for some class
       (``aggregate="any"``), for every class (``"all"``), or per class
       (``"class"``: a unit flagged by class ``c``'s mistakes is kept out of
       the scores of the other classes);
    4. zeroes them and retrains the last layer, class-balanced (L2 logistic
       regression on standardised embeddings), on ``X`` or on separate tuning
       data ``X_tune`` (the paper retrains on the training split).

    The method rests on a premise: post-ReLU, sparse units (a ResNet's pooled
    features) where a spurious feature switches on units of its own, so that
    most units have the same median (0) on mistakes and successes. In dense or
    signed embeddings the mistakes differ from the successes in the core
    features too, the rule flags most units, and zeroing them all collapses
    accuracy. The guard ``max_accuracy_drop`` prevents that: the mask is
    accepted only if the worst-class accuracy of the retrained head on
    held-out data (``X`` when retraining on ``X_tune``, otherwise 2-fold
    cross-fitting on ``X``) is at most ``max_accuracy_drop`` below that of the
    same retraining without the mask; otherwise it is halved (keeping the
    largest ``delta_``) until it is. Signed embeddings are warned about.

    Select ``threshold`` and ``C`` without group labels with
    ``GridSearchCV(..., scoring=worst_class_scorer)`` (or the paper's
    ``neuron_delta_scorer``); with group labels, ``worst_group_scorer`` works
    as for every estimator (``fit`` requests no ``spurious``).

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer whose mistakes are studied. Wrap a fitted
        scikit-learn classifier in :class:`sklearn.frozen.FrozenEstimator` so
        that cloning keeps it fitted. ``None`` fits an L2 logistic regression on
        the tuning data (``X_tune``, else ``X``: then its mistakes are training
        errors, a weaker signal).
    threshold : float, default=0.0
        A unit is flagged for a class when its ``delta_`` exceeds this (the
        paper uses 0). ``np.inf`` flags nothing: the same retraining without
        mask, the control that shows the mask's own contribution.
    aggregate : {"any", "all", "class"}, default="any"
        How classes are combined: flag a unit when some class flags it (the
        union), when every class does (the intersection), or keep per-class
        masks, retrained one-vs-rest, each class's score on its own unmasked
        units. Per-class masks are the weakest: with two classes, a background's
        units stay in the score of the class whose mistakes did not flag them,
        as evidence against it.
    max_accuracy_drop : "auto", float in [0, 1] or None, default="auto"
        The guard: largest loss of held-out worst-class accuracy that the mask
        may cost against the same retraining without it. ``"auto"`` allows
        one standard error of that accuracy (``sqrt(p (1 - p) / n)``, ``n``
        the held-out size of the smallest class), so that noise alone does
        not reject a mask; 0 keeps a mask only if it costs nothing. ``None``
        applies the thresholded mask as it is (then a mask that covers every
        unit raises).
    C : float, default=1.0
        Inverse L2 regularisation strength of the retrained head (as in
        :class:`~sklearn.linear_model.LogisticRegression`).
    standardize : bool, default=True
        Standardise the embeddings for the retraining (folded into ``coef_``).
    max_iter : int, default=1000
        Maximum solver iterations per retraining.
    tol : float, default=1e-4
        Solver tolerance.
    random_state : int, RandomState instance or None, default=None
        Controls the cross-fitting halves of the guard.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Retrained weights, zero on the masked units (the original head's, when
        it makes no mistake on ``X``).
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Retrained intercepts.
    classes_ : ndarray of shape (n_classes,)
        Class labels (the head's).
    delta_ : ndarray of shape (n_classes, n_features)
        Median activation on the head's mistakes minus on its successes; NaN
        rows for skipped classes.
    mask_ : ndarray of bool, shape (n_features,) or (n_classes, n_features)
        Zeroed units (per class with ``aggregate="class"``), after the guard.
    spurious_dims_ : ndarray of int
        Indices of the units zeroed (for at least one class).
    n_flagged_ : int
        Units (per-class entries with ``"class"``) above the threshold, before
        the guard.
    guard_scores_ : dict
        ``{number masked: held-out worst-class accuracy}`` of every mask the
        guard tried, 0 (no mask) included; empty when the guard did not run
        (``max_accuracy_drop=None``, or nothing flagged).
    skipped_classes_ : list
        Classes with no mistakes or no successes on ``X`` (no ``delta_``).
    n_iter_ : int
        Solver iterations of the final retraining.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    DFRClassifier : Group-balanced retraining, with group labels.
    worst_class_scorer : Label-free ``scoring=`` for GridSearchCV.
    neuron_delta_scorer : The paper's label-free selection criterion.

    References
    ----------
    .. [1] G. Zheng, W. Ye, A. Zhang, "NeuronTune: Towards Self-Guided Spurious
       Bias Mitigation", ICML 2025.

    Examples
    --------
    Post-ReLU units, one per class and one per background; the head was
    trained by ERM on data where the background agrees with the class 95 % of
    the time, and the tuner identifies on balanced held-out data and retrains
    on the training split, as in the paper.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur import NeuronTuner
    >>> rng = np.random.default_rng(0)
    >>> def units(y, s):
    ...     signal = 2 * np.c_[y, 1 - y, s, 1 - s] - 1
    ...     return np.maximum(0, signal + rng.normal(0, .6, (len(y), 4)))
    >>> y_tr = rng.integers(0, 2, 1000)
    >>> X_tr = units(y_tr, np.where(rng.random(1000) < .95, y_tr, 1 - y_tr))
    >>> y_va = rng.integers(0, 2, 400)
    >>> X_va = units(y_va, rng.integers(0, 2, 400))
    >>> head = LogisticRegression().fit(X_tr, y_tr)
    >>> tuner = NeuronTuner(head=head, random_state=0)
    >>> tuner = tuner.fit(X_va, y_va, X_tune=X_tr, y_tune=y_tr)
    >>> tuner.spurious_dims_
    array([2, 3])
    >>> tuner.coef_[:, 2:]
    array([[0., 0.]])
    """

    __metadata_request__fit = {"spurious": metadata_routing.UNUSED}

    _parameter_constraints: dict = {
        "head": "no_validation",
        "threshold": [Real],
        "aggregate": [StrOptions({"any", "all", "class"})],
        "max_accuracy_drop": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both"),
                              None],
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, head=None, *, threshold=0.0, aggregate="any",
                 max_accuracy_drop="auto", C=1.0, standardize=True, max_iter=1000,
                 tol=1e-4, random_state=None):
        self.head = head
        self.threshold = threshold
        self.aggregate = aggregate
        self.max_accuracy_drop = max_accuracy_drop
        self.C = C
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, X_tune=None, y_tune=None):
        """Find the shortcut's units on ``X``, zero them, retrain the last layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out embeddings (the identification set), not the data the head
            was trained on.
        y : array-like of shape (n_samples,)
            Class labels. No group labels are needed.
        X_tune : array-like of shape (n_tune, n_features), default=None
            Separate retraining data (the paper uses the training split).
            ``X`` by default. Under metadata routing, request it with
            ``set_fit_request(X_tune=True, y_tune=True)``; a search splits
            metadata with as many rows as ``X`` along with ``X``, so give
            ``X_tune`` a different length or fit outside the search.
        y_tune : array-like of shape (n_tune,), default=None
            Class labels of ``X_tune``; required with it.

        Returns
        -------
        self : NeuronTuner
        """
        X, y, _ = self._validate_fit_inputs(X, y)
        if (X_tune is None) != (y_tune is None):
            raise ValueError("NeuronTuner: pass X_tune and y_tune together.")
        if X_tune is not None:
            X_tune, y_tune = validate_data(self, X_tune, y_tune, dtype=FLOAT_DTYPES,
                                           reset=False)
            X_tune = X_tune.astype(X.dtype, copy=False)
        Xr, yr = (X, y) if X_tune is None else (X_tune, y_tune)

        head = resolve_head(self.head, Xr, yr, who="NeuronTuner")
        head.check_classes(y, who="NeuronTuner")
        self.classes_ = head.classes
        n_classes = len(self.classes_)
        y_idx = _class_index(self.classes_, y)
        yr_idx = _class_index(self.classes_, yr)
        if X.min() < 0:
            warnings.warn(
                "NeuronTuner: X has negative values. NeuronTune assumes non-negative "
                "(post-ReLU) units, where zeroing a unit switches a feature off; on "
                "signed coordinates the rule flags units by noise. The guard "
                "(max_accuracy_drop) limits the damage; check the no-mask control "
                "(threshold=np.inf).", UserWarning, stacklevel=2)

        wrong = head.predict(X) != y
        self.delta_ = neuron_deltas(X, y_idx, wrong, n_classes)
        self.skipped_classes_ = self.classes_[np.isnan(self.delta_[:, 0])].tolist()
        self.guard_scores_ = {}
        score = self._unit_scores()  # (1 or n_classes, d): -inf where not flagged
        order = np.argsort(-score, axis=None, kind="stable")
        self.n_flagged_ = int(np.isfinite(score).sum())

        def mask_of(k):  # the k most strongly flagged units (or class-unit pairs)
            m = np.zeros(score.size, bool)
            m[order[:k]] = True
            m = m.reshape(score.shape)
            return m if self.aggregate == "class" else m[0]

        if not wrong.any():
            warnings.warn(
                "NeuronTuner: the head makes no mistake on X, so there is nothing to "
                "tune: the original head is kept. Identify on held-out data, not on "
                "the data the head was trained on.", UserWarning, stacklevel=2)
            self.mask_, self.n_iter_ = mask_of(0), 0
            self.spurious_dims_ = np.array([], dtype=np.intp)
            self.coef_, self.intercept_ = head.coef.copy(), head.intercept.copy()
            return self
        if self.skipped_classes_:
            warnings.warn(
                f"NeuronTuner: classes {self.skipped_classes_[:10]} have no mistakes "
                "or no successes of the head on X and are skipped when flagging units.",
                UserWarning, stacklevel=2)

        k = self.n_flagged_
        if k == score.size:
            if self.max_accuracy_drop is None:
                raise ValueError(
                    f"NeuronTuner: every unit ({X.shape[1]}) is above threshold="
                    f"{self.threshold}; zeroing them all leaves nothing to classify "
                    "with. Raise the threshold, or keep the guard (max_accuracy_drop).")
            warnings.warn(
                f"NeuronTuner: every unit is above threshold={self.threshold} (the "
                "embeddings do not look like sparse post-ReLU units); the guard "
                "tries smaller masks.", UserWarning, stacklevel=2)
            k //= 2
        if k and self.max_accuracy_drop is not None:
            k = self._guard(X, y_idx, X_tune, yr_idx, n_classes, k, mask_of)
        self.mask_ = mask_of(k)
        self.spurious_dims_ = np.flatnonzero(np.atleast_2d(self.mask_).any(axis=0))
        self.coef_, self.intercept_, self.n_iter_ = self._retrain(
            Xr, yr_idx, n_classes, self.mask_, self._stats(Xr))
        return self

    def _unit_scores(self):
        """How strongly each unit (row per class with ``"class"``) is flagged."""
        delta = self.delta_
        valid = ~np.isnan(delta[:, 0])
        flag = np.zeros(delta.shape, bool)
        flag[valid] = delta[valid] > self.threshold
        high = np.where(flag, delta, -np.inf)
        if self.aggregate == "any":
            return high.max(axis=0, initial=-np.inf)[None]
        if self.aggregate == "all":
            if not valid.any():
                return np.full((1, delta.shape[1]), -np.inf)
            ok = flag[valid].all(axis=0)
            return np.where(ok, delta[valid].min(axis=0), -np.inf)[None]
        # "class": unit i leaves class k's score if another class's mistakes flag it
        n_classes = delta.shape[0]
        rows = np.full(delta.shape, -np.inf)
        for k in range(n_classes):
            others = np.delete(high, k, axis=0)
            rows[k] = others.max(axis=0, initial=-np.inf)
        return rows

    def _guard(self, X, y_idx, X_tune, y_tune_idx, n_classes, k, mask_of):
        """Halve the mask until held-out worst-class accuracy is within the drop.

        Retrains on ``X_tune`` and evaluates on ``X`` when given separate tuning
        data, else cross-fits on two class-stratified halves of ``X``. At most
        ``_GUARD_SAMPLES`` samples are fitted on: the guard compares
        accuracies, which a subsample estimates well, at a fraction of the cost.
        """
        rng = check_random_state(self.random_state)
        if X_tune is None:
            sub = _stratified_subset(y_idx, _GUARD_SAMPLES, rng)
            rows = np.arange(len(y_idx)) if sub is None else sub
            yf = y_idx[rows]
            half = np.zeros(len(rows), bool)
            for c in range(n_classes):
                members = rng.permutation(np.flatnonzero(yf == c))
                half[members[: len(members) // 2]] = True
            # each half copied once (not the subset, then each half twice)
            Xh, Xo = X[rows[half]], X[rows[~half]]
            folds = [(Xh, yf[half], Xo, yf[~half]), (Xo, yf[~half], Xh, yf[half])]
        else:
            sub = _stratified_subset(y_tune_idx, _GUARD_SAMPLES, rng)
            Xa, ya = ((X_tune, y_tune_idx) if sub is None
                      else (X_tune[sub], y_tune_idx[sub]))
            folds = [(Xa, ya, X, y_idx)]
        folds = [(Xa, ya, self._stats(Xa), Xb, yb) for Xa, ya, Xb, yb in folds]

        def accepted(kk, drop=0.0):
            accs = []
            for Xa, ya, stats, Xb, yb in folds:
                coef, icpt, _ = self._retrain(Xa, ya, n_classes, mask_of(kk), stats)
                accs.append(worst_class_accuracy(yb, _predict_idx(Xb, coef, icpt)))
            self.guard_scores_[int(kk)] = score = float(np.mean(accs))
            return score >= self.guard_scores_[0] - drop - 1e-12

        accepted(0)
        drop = self.max_accuracy_drop
        if drop == "auto":  # one standard error of the baseline's worst-class accuracy
            p = self.guard_scores_[0]
            n_small = np.bincount(np.concatenate([f[4] for f in folds]),
                                  minlength=n_classes).min()
            drop = np.sqrt(p * (1 - p) / max(n_small, 1))
        while not accepted(k, drop):
            k //= 2
        return k

    def _stats(self, X):
        """Mean and scale of the retraining's (implicit) standardisation."""
        if self.standardize:
            return standardize_stats(X)
        return np.zeros(X.shape[1], X.dtype), np.ones(X.shape[1], X.dtype)

    def _retrain(self, X, y_idx, n_classes, mask, stats):
        """Class-balanced L2 logistic regression with the ``mask`` units zeroed.

        A zeroed unit gets an infinite scale in the implicit standardisation,
        so the solver never sees it and its weight is exactly 0, without
        copying ``X``. Returns coef (K, d), intercept (K,) and the iterations.
        """
        mean, scale = stats
        kw = dict(l2=1.0 / (self.C * X.shape[0]), mean=mean, max_iter=self.max_iter,
                  tol=self.tol)
        if mask.ndim == 1:
            fit = fit_logistic(X, y_idx, n_classes, weights=balanced_weights(y_idx),
                               scale=_masked(scale, mask), **kw)
            return fit.coef[0], fit.intercept[0], fit.n_iter
        # Per-class masks: one-vs-rest, each class's score on its own units.
        coef = np.zeros((n_classes, X.shape[1]), X.dtype)
        icpt = np.zeros(n_classes, X.dtype)
        n_iter = 0
        for c in range(n_classes):
            target = (y_idx == c).astype(np.intp)
            fit = fit_logistic(X, target, 2, weights=balanced_weights(target),
                               scale=_masked(scale, mask[c]), **kw)
            coef[c], icpt[c] = fit.coef[0, 0], fit.intercept[0, 0]
            n_iter = max(n_iter, fit.n_iter)
        if n_classes == 2:  # softmax of two scores: the logit is their difference
            coef, icpt = coef[1:] - coef[:1], icpt[1:] - icpt[:1]
        return coef, icpt, n_iter
