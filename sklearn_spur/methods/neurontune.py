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
from numbers import Real

import numpy as np
from sklearn.utils import check_random_state, metadata_routing
from sklearn.utils._param_validation import Interval, StrOptions

from .._core.groups import balanced_weights
from .._core.selection import stratified_halves
from .._core.solver import standardize_stats
from .._core.template import MAX_ITER, TOL, LastLayerClassifier, RefitProblem
from ._neuron_deltas import (
    _GUARD_SAMPLES,
    given_mask,
    neuron_delta_scorer,
    neuron_deltas,
    worst_class_scorer,
)

__all__ = ["NeuronTuner", "neuron_delta_scorer", "neuron_deltas", "worst_class_scorer"]

def _masked(scale, mask):
    """Standardisation scale with the masked units at infinity: the solver's
    implicit ``x / scale`` is then 0 there, so their weights stay exactly 0."""
    return np.where(mask, np.inf, scale).astype(scale.dtype)


class NeuronTuner(LastLayerClassifier):
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
       regression on standardised embeddings), on ``X``.

    The paper retrains on the training split. Data is not a hyperparameter,
    so that is two fits: identify on held-out data, then retrain on the
    training split with the units found (``units=``)::

        found = NeuronTuner(head=head).fit(X_val, y_val).spurious_dims_
        tuner = NeuronTuner(head=head, units=found).fit(X_train, y_train)

    The method rests on a premise: post-ReLU, sparse units (a ResNet's pooled
    features) where a spurious feature switches on units of its own, so that
    most units have the same median (0) on mistakes and successes. In dense or
    signed embeddings the mistakes differ from the successes in the core
    features too, the rule flags most units, and zeroing them all collapses
    accuracy. The guard ``max_accuracy_drop`` prevents that: the mask is
    accepted only if the worst-class accuracy (``selection``) of the retrained
    head on held-out halves (2-fold cross-fitting on ``X``) is at most
    ``max_accuracy_drop`` below that of the same retraining without the mask;
    otherwise it is halved (keeping the largest ``delta_``) until it is.
    Signed embeddings are warned about.

    Select ``threshold`` and ``C`` without group labels with ``GridSearchCV``
    and ``make_inferred_group_scorer()``, ``worst_class_scorer`` or the paper's
    ``neuron_delta_scorer``; with group labels, ``worst_group_scorer`` works
    as for every estimator (``fit`` requests no ``spurious``).

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer whose mistakes are studied. Wrap a fitted
        scikit-learn classifier in :class:`sklearn.frozen.FrozenEstimator` so
        that cloning keeps it fitted. ``None`` fits an L2 logistic regression on
        ``X`` (then its mistakes are training errors, a weaker signal).
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
        The guard: largest loss of held-out worst accuracy (``selection``) that
        the mask may cost against the same retraining without it. ``"auto"``
        allows one standard error of that accuracy (``sqrt(p (1 - p) / n)``,
        ``n`` the held-out size of the smallest class), so that noise alone does
        not reject a mask; 0 keeps a mask only if it costs nothing. ``None``
        applies the thresholded mask as it is (then a mask that covers every
        unit raises).
    units : array-like of int or bool, or None, default=None
        Units to zero, given rather than identified (indices, or a boolean mask
        of shape ``(n_features,)``, or ``(n_classes, n_features)`` with
        ``aggregate="class"``): ``fit`` then only retrains, without the guard.
        Pass the ``spurious_dims_`` (or ``mask_``) found on held-out data to
        retrain on another split.
    C : float, default=1.0
        Inverse L2 regularisation strength of the retrained head (as in
        :class:`~sklearn.linear_model.LogisticRegression`).
    standardize : bool, default=True
        Standardise the embeddings for the retraining (folded into ``coef_``).
    selection : {"worst_class", "inferred"}, default="worst_class"
        The guard's accuracies: over the classes, or over pseudo-groups inferred as
        AFR's selection does (:func:`~sklearn_spur.infer_groups`; on dense
        units with correlated held-out data it accepts harmful masks: see the
        guide "I have no group labels").
    max_iter : int, default=2000
        Maximum solver iterations per retraining.
    tol : float, default=1e-4
        Solver tolerance.
    random_state : int, RandomState instance or None, default=None
        Controls the cross-fitting halves of the guard.
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) of the guard's fits; 2: it stays.

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
        ``{number masked: held-out worst accuracy}`` of every mask the
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
    >>> found = NeuronTuner(head=head, random_state=0).fit(X_va, y_va)
    >>> found.spurious_dims_
    array([2, 3])
    >>> tuner = NeuronTuner(head=head, units=found.spurious_dims_).fit(X_tr, y_tr)
    >>> tuner.coef_[:, 2:]
    array([[0., 0.]])
    """

    __metadata_request__fit = {"spurious": metadata_routing.UNUSED}
    _uses_head = "required"  # None: an ERM stand-in fitted on X
    _label_free = True
    _selection_folds = 2
    _selection_max_samples = _GUARD_SAMPLES
    _sequential_selection = True
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        **LastLayerClassifier._selection_constraints,
        "head": "no_validation",
        "threshold": [Real],
        "aggregate": [StrOptions({"any", "all", "class"})],
        "max_accuracy_drop": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both"),
                              None],
        "units": ["array-like", None],
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
        **LastLayerClassifier._verbose_constraints,
    }

    def __init__(self, *, head=None, threshold=0.0, aggregate="any",
                 max_accuracy_drop="auto", units=None, C=1.0, standardize=True,
                 selection="worst_class", max_iter=MAX_ITER, tol=TOL,
                 random_state=None, verbose=0):
        self.head = head
        self.threshold = threshold
        self.aggregate = aggregate
        self.max_accuracy_drop = max_accuracy_drop
        self.units = units
        self.C = C
        self.standardize = standardize
        self.selection = selection
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------- identification
    def _check_context(self, ctx):
        super()._check_context(ctx)
        X, who = ctx.X, type(self).__name__
        self.guard_scores_ = {}
        if self.units is not None:
            ctx.shared["mask"] = given_mask(self.units, self.aggregate, ctx.n_classes,
                                             ctx.X.shape[1])
            self.delta_ = None
            self.skipped_classes_, self.n_flagged_ = [], int(ctx.shared["mask"].sum())
            return
        if X.min() < 0:
            warnings.warn(
                f"{who}: X has negative values. NeuronTune assumes non-negative "
                "(post-ReLU) units, where zeroing a unit switches a feature off; on "
                "signed coordinates the rule flags units by noise. The guard "
                "(max_accuracy_drop) limits the damage; check the no-mask control "
                "(threshold=np.inf).", UserWarning, stacklevel=4)
        wrong = ctx.evidence.wrong
        self.delta_ = neuron_deltas(X, ctx.y_idx, wrong, ctx.n_classes)
        self.skipped_classes_ = ctx.classes[np.isnan(self.delta_[:, 0])].tolist()
        score = self._unit_scores()  # (1 or n_classes, d): -inf where not flagged
        # The guard's halvings keep the largest raw deltas (the paper's statistic;
        # delta over each unit's spread measured no better: benchmarks/RESULTS.md).
        ctx.shared["order"] = np.argsort(-score, axis=None, kind="stable")
        ctx.shared["shape"] = score.shape
        self.n_flagged_ = k = int(np.isfinite(score).sum())
        if not wrong.any():
            warnings.warn(
                f"{who}: the head makes no mistake on X, so there is nothing to "
                "tune: the original head is kept. Identify on held-out data, not on "
                "the data the head was trained on.", UserWarning, stacklevel=4)
            ctx.shared["keep_head"] = True
            k = 0
        elif self.skipped_classes_:
            warnings.warn(
                f"{who}: classes {self.skipped_classes_[:10]} have no mistakes "
                "or no successes of the head on X and are skipped when flagging units.",
                UserWarning, stacklevel=4)
        if k and k == score.size:
            if self.max_accuracy_drop is None:
                raise ValueError(
                    f"{who}: every unit ({X.shape[1]}) is above threshold="
                    f"{self.threshold}; zeroing them all leaves nothing to classify "
                    "with. Raise the threshold, or keep the guard (max_accuracy_drop).")
            warnings.warn(
                f"{who}: every unit is above threshold={self.threshold} (the "
                "embeddings do not look like sparse post-ReLU units); the guard "
                "tries smaller masks.", UserWarning, stacklevel=4)
            k //= 2
        ctx.shared["k"] = k
        ctx.shared["stats"] = {}

    def _mask_of(self, ctx, k):
        """The ``k`` most strongly flagged units (or class-unit pairs)."""
        if "mask" in ctx.shared:
            return ctx.shared["mask"]
        m = np.zeros(int(np.prod(ctx.shared["shape"])), bool)
        m[ctx.shared["order"][:k]] = True
        m = m.reshape(ctx.shared["shape"])
        return m if self.aggregate == "class" else m[0]

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

    # ------------------------------------------------------------ the guard
    def _selection_grid(self, ctx):
        k = ctx.shared.get("k", 0)
        if "mask" in ctx.shared or not k or self.max_accuracy_drop is None:
            return None
        halvings = [k]
        while halvings[-1] > 1:
            halvings.append(halvings[-1] // 2)
        return [{"k": 0}] + [{"k": kk} for kk in halvings]

    def _halves(self, ctx, strata):
        # the guard's own stream (a RandomState of random_state), as it always drew
        return ~stratified_halves(strata, check_random_state(self.random_state))

    def _choose(self, candidates, scores):
        """The largest mask within the allowed drop of the no-mask baseline."""
        if len(scores) < 2:
            return None
        drop = self.max_accuracy_drop
        if drop == "auto":  # one standard error of the baseline's worst accuracy
            p = scores[0]
            drop = np.sqrt(p * (1 - p) / max(self._n_smallest, 1))
        if scores[-1] >= scores[0] - drop - 1e-12:
            return len(scores) - 1
        return 0 if len(scores) == len(candidates) else None

    def _select(self, ctx):
        # held-out size of the smallest class over both halves (the auto drop's n)
        self._n_smallest = int(np.bincount(ctx.y_idx, minlength=ctx.n_classes).min())
        params, init = super()._select(ctx)
        self.guard_scores_ = {int(k): v for k, v in self.selection_scores_.items()}
        return params, init

    # ----------------------------------------------------------- retraining
    def _refit_problem(self, ctx, k=None):
        if ctx.shared.get("keep_head"):
            return None
        mask = self._mask_of(ctx, ctx.shared.get("k", 0) if k is None else k)
        ctx.shared["final_mask"] = mask
        mean, scale = self._stats(ctx.X)
        weights = balanced_weights(ctx.y_idx).astype(ctx.X.dtype)
        if mask.ndim == 1:
            return RefitProblem(weights=weights, C=self.C, mean=mean,
                                scale=_masked(scale, mask))
        # Per-class masks: one-vs-rest, each class's score on its own units.
        problems = []
        for c in range(ctx.n_classes):
            target = (ctx.y_idx == c).astype(np.intp)
            problems.append(RefitProblem(
                weights=balanced_weights(target).astype(ctx.X.dtype), C=self.C,
                y_idx=target, n_classes=2, mean=mean, scale=_masked(scale, mask[c])))
        return problems

    def _combine(self, ctx, fits):
        if len(fits) == 1:
            return super()._combine(ctx, fits)
        coef = np.stack([fit.coef[0, 0] for fit in fits])
        icpt = np.array([fit.intercept[0, 0] for fit in fits], dtype=coef.dtype)
        if len(fits) == 2:  # softmax of two scores: the logit is their difference
            coef, icpt = coef[1:] - coef[:1], icpt[1:] - icpt[:1]
        return coef, icpt

    def _stats(self, X):
        """Mean and scale of the retraining's (implicit) standardisation."""
        if self.standardize:
            return standardize_stats(X)
        return np.zeros(X.shape[1], X.dtype), np.ones(X.shape[1], X.dtype)

    def _after_fit(self, ctx):
        mask = ctx.shared.get("final_mask")
        if mask is None:
            mask = self._mask_of(ctx, 0)
        self.mask_ = mask
        self.spurious_dims_ = np.flatnonzero(np.atleast_2d(mask).any(axis=0))
