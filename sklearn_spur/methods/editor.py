"""Single-weight editing: fictitious sub-classes and the bias that removes them."""

from __future__ import annotations

import copy
from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._core.cache import LRUCache
from .._core.heads import resolve_head
from .._core.solver import standardize_stats
from .._core.subclass_head import SubclassHead
from .._core.template import MAX_ITER, TOL, LastLayerClassifier, RefitProblem
from ._editing import (
    check_fictitious,
    fictitious_values,
    strength_grid,
    strength_shifts,
    subclass_cache_key,
    subclass_plan,
    warm_start,
)
from ._editing_strength import select_strength, strength_path

__all__ = ["SingleWeightEditor", "fictitious_values", "strength_grid"]

_WHO = "SingleWeightEditor"

# The last few sub-class heads, keyed by everything the fit reads (deterministic,
# so a hit is what a refit gives); every hit is a deep copy, never shared.
_FIT_CACHE = LRUCache(max_entries=16)


class SingleWeightEditor(LastLayerClassifier):
    """Neutralize a spurious feature by editing one weight per class, to any degree.

    The classes are split into *sub-classes* and a linear head with one output
    per sub-class is fitted on the embeddings; a class's logit is the
    log-sum-exp of its sub-class logits. In every class one sub-class is
    *fictitious*: the one that carries the spurious feature (samples of class
    ``c`` whose attribute is the value associated with ``c``). The edit
    subtracts ``lam = -log(1 - strength)`` from the bias of each fictitious
    output: one weight per fictitious sub-class, nothing else. ``strength=0``
    is no edit; ``strength=1`` removes the fictitious sub-classes exactly
    (the softmax over the other outputs is only renormalised). ``strength``
    acts at prediction time, so ``set_params(strength=...)`` on a fitted editor
    changes its predictions without refitting, and a grid search over
    ``strength`` fits the sub-class head once per fold (see ``memory``).

    The paper [1]_ states the fictitious sub-classes, the single-weight
    removal and the controllable degree; its code is unreleased, and the rest
    (sub-classes, warm start, log-sum-exp pooling, the bias as the weight, the
    map from ``strength`` to the shift) is this package's reading of it.

    Where the edit matters: fitted on the spuriously correlated training
    split, the fictitious biases carry the spurious prior (about the log-odds
    of the attribute given the class, ``log(0.95/0.05) = 2.9`` at 95 %
    agreement), which ``strength="prior"`` removes, per class. Without
    ``spurious``, the sub-classes are the pseudo-groups of
    :func:`~sklearn_spur.infer_groups` (the fictitious one: pseudo value 0, where
    the head is most confident); fit it on held-out data the head was not
    trained on. Choose the strength with :meth:`strength_path`
    (one pass over ``X`` for a whole curve) or ``GridSearchCV`` over
    :func:`strength_grid`, which is even in the bias shift. See the user guide
    (``docs/guide/editor.rst``) for which split and which strength.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer: its rows warm-start the sub-class outputs and,
        without ``spurious``, it defines the sub-classes. ``None``
        fits an L2 logistic regression on ``(X, y)``. Wrap a fitted
        scikit-learn classifier in :class:`sklearn.frozen.FrozenEstimator` so
        that cloning keeps it fitted.
    strength : float in [0, 1], "prior" or "auto", default="prior"
        Degree of the edit: the bias of each fictitious output is lowered by
        ``-log(1 - strength)`` (0: no edit, 1: fictitious sub-classes removed).
        ``"prior"`` lowers each by its own log-ratio of sub-class frequencies
        in the fitting data, ``log(n_fictitious / mean n_core)`` of its class
        (``prior_shift_``, never negative): the shift that makes them as
        frequent as the core sub-classes (inferred ones too; 0 with
        ``confidence``, whose split carries no spurious prior).
        ``"auto"``: chosen at fit time (``strength_``) by held-out worst accuracy
        over the groups, or without ``spurious`` over inferred groups
        (``selection``; see the user guide). Applied at prediction time.
    fictitious : {"head", "data"} or dict, default="head"
        Which attribute value is the fictitious sub-class of each class (used
        with ``spurious``):

        - ``"head"``: the value whose samples the original head assigns to
          ``c`` with the highest mean probability: the association the head
          learned from its training data, readable on balanced data too
          (with ``head=None``, the head fitted on the fitting data);
        - ``"data"``: the value most associated with ``c`` in the fitting
          data (highest ``P(value | c) / P(value)``); meaningless on a
          group-balanced set;
        - ``{class: value}``: named by the user. To count it in the data the
          head was trained on, pass
          ``fictitious=fictitious_values(y_train, spurious_train)``: data is
          never a hyperparameter, a mapping of labels is.
    confidence : float in [0, 1) or None, default=None
        Without ``spurious``: ``None`` infers the sub-classes
        (:func:`~sklearn_spur.infer_groups`); a probability splits each class
        into the samples the head gets right with at least that probability
        of the true class (fictitious) and the others (the earlier rule).
    C : float, default=1.0
        Inverse L2 regularisation of the sub-class head, in
        :class:`~sklearn.linear_model.LogisticRegression`'s scale.
    standardize : bool, default=True
        Penalise the weights on standardised embeddings (folded back, so the
        head acts on raw embeddings).
    max_iter : int, default=2000
        Maximum solver iterations (a ConvergenceWarning when reached).
    tol : float, default=1e-4
        Solver tolerance: stop when no gradient entry exceeds it.
    selection : {"inferred", "worst_class"}, default="inferred"
        ``strength="auto"`` without ``spurious``: worst accuracy over groups
        inferred as AFR's selection does (:func:`infer_groups`), or classes.
    memory : bool or None, default=True
        Keep the last 16 fitted sub-class heads in this process, keyed by a
        hash of everything the fit reads but ``strength``: ``GridSearchCV`` over
        ``strength`` fits once per fold; a hit gives what a refit would, as
        the estimator's own copies. ``False`` or ``None`` turns it off.
    random_state : int, RandomState instance or None, default=None
        Controls the halves of ``strength="auto"``.
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) of the sub-class head fits; 2: it stays.
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    subclasses_ : list of tuple
        ``(class, value)`` of every output, in output order (class-major);
        ``value`` is the attribute value, the pseudo value (0 fictitious)
        when inferred, or ``"confident"`` / ``"other"`` with ``confidence``;
        absent combinations get no output.
    subclass_class_ : ndarray of shape (n_outputs,)
        Index in ``classes_`` of each output's class.
    subclass_coef_ : ndarray of shape (n_outputs, n_features)
        Weights of the sub-class head (the edit never touches them).
    subclass_intercept_ : ndarray of shape (n_outputs,)
        Unedited biases.
    fictitious_mask_ : ndarray of shape (n_outputs,) of bool
        The outputs whose bias the edit lowers.
    fictitious_ : dict
        ``{class: value}`` of the fictitious sub-class of each edited class.
    strength_, strength_scores_ : float, dict
        With ``strength="auto"``: the choice, and ``{strength: held-out score}``.
    prior_shift_ : ndarray of shape (n_outputs,)
        The shift ``strength="prior"`` applies (0 for core outputs, and for
        all outputs with ``confidence``).
    subclass_counts_ : ndarray of shape (n_outputs,)
        Fitting samples per sub-class.
    edited_weights_ : dict
        The weights the current ``strength`` touches: ``"index"`` (output
        rows), ``"subclass"``, ``"original"`` and ``"edited"`` bias values and
        the ``"shift"``.
    n_iter_ : int
        Solver iterations.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    strength_grid : Strengths evenly spaced in the bias shift.
    fictitious_values : The ``fictitious`` mapping counted in a training split.
    DFRClassifier : Retrain the head on group-balanced held-out data.

    References
    ----------
    .. [1] S. Hakemi, N. Akhtar, G. M. Hassan, A. Mian, "Single-weight Model
       Editing for Post-hoc Spurious Correlation Neutralization", 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import SingleWeightEditor
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); s = np.where(rng.random(400) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .7, 400), 2 * s + rng.normal(0, .3, 400)]
    >>> editor = SingleWeightEditor(strength=0.0).fit(X, y, spurious=s)
    >>> editor.subclasses_, editor.fictitious_
    ([(0, 0), (0, 1), (1, 0), (1, 1)], {0: 0, 1: 1})
    >>> edited = editor.set_params(strength=0.9).edited_weights_
    >>> edited["index"], edited["shift"].round(2)
    (array([0, 3]), array([2.3, 2.3]))
    """

    _fit_on = "training or validation"
    _label_free = True
    _uses_head = "optional"
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "head": "no_validation",
        **LastLayerClassifier._selection_constraints,
        "strength": [Interval(Real, 0, 1, closed="both"),
                     StrOptions({"prior", "auto"})],
        # A tuple (the training data, once accepted) is refused in fit with the fix.
        "fictitious": [StrOptions({"head", "data"}), dict, Hidden(tuple)],
        "confidence": [Interval(Real, 0, 1, closed="left"), None],
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "memory": ["boolean", None],
        **LastLayerClassifier._verbose_constraints,
    }

    def __init__(self, *, head=None, strength="prior", fictitious="head",
                 confidence=None, C=1.0, standardize=True, selection="inferred",
                 max_iter=MAX_ITER, tol=TOL, memory=True, random_state=None,
                 verbose=0):
        self.head = head
        self.strength = strength
        self.fictitious = fictitious
        self.confidence = confidence
        self.C = C
        self.standardize = standardize
        self.selection = selection
        self.max_iter = max_iter
        self.tol = tol
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------ template hooks
    def _check_context(self, ctx):
        super()._check_context(ctx)
        check_fictitious(self.fictitious, ctx.spurious)

    def _fit_head(self, ctx):
        """The sub-class head, from the in-process cache when ``memory`` is on."""
        key = subclass_cache_key(self, ctx) if self.memory else None
        cached = None if key is None else _FIT_CACHE.get(key)
        if cached is not None:  # a deep copy: nothing shared with other estimators
            self.best_params_, self.selection_scores_ = {}, {}  # as the template's
            ctx.shared["plan"], solved = copy.deepcopy(cached)
            return solved
        if ctx.head is None:  # the ERM head, fitted only when the cache misses
            ctx.head = resolve_head(None, ctx.X, ctx.y, who=_WHO)
        self._subclass_groups(ctx)
        solved = super()._fit_head(ctx)
        if key is not None:
            _FIT_CACHE.put(key, copy.deepcopy((ctx.shared["plan"], solved)))
        return solved

    def _subclass_groups(self, ctx):
        """Infer the sub-classes on the whole data first (subsets take their rows)."""
        if ctx.spurious is None and self.confidence is None:
            self._inferred_groups(ctx)

    def _refit_problem(self, ctx):
        """A multinomial logistic regression on the sub-class targets."""
        sub_idx, plan = subclass_plan(ctx, self.fictitious, self.confidence)
        ctx.shared["plan"] = plan
        coef_init, intercept_init = warm_start(ctx, plan)
        mean, scale = standardize_stats(ctx.X) if self.standardize else (None, None)
        return RefitProblem(C=self.C, y_idx=sub_idx, n_classes=len(plan.subclasses),
                            mean=mean, scale=scale, coef_init=coef_init,
                            intercept_init=intercept_init)

    def _finish(self, ctx, coef, intercept):
        plan = ctx.shared["plan"]
        head = SubclassHead.from_solver(coef, intercept, plan.output_class)
        return head.coef, head.intercept

    def _after_fit(self, ctx):
        # The template stores the solved rows as coef_/intercept_; they are
        # sub-class rows here, not one row per class, so they go by their name.
        self.subclass_coef_, self.subclass_intercept_ = self.coef_, self.intercept_
        del self.coef_, self.intercept_
        plan = ctx.shared["plan"]
        self.subclasses_ = plan.subclasses
        self.subclass_class_ = plan.output_class
        self.subclass_counts_ = plan.counts
        self.fictitious_mask_ = plan.mask
        self.fictitious_ = plan.fictitious
        self.prior_shift_ = plan.prior_shift
        if self.strength == "auto":  # the template's uncached fit on a half
            self.strength_, self.strength_scores_ = select_strength(
                self, ctx, LastLayerClassifier._fit_head)

    # ----------------------------------------------------------- the edit
    def _subclass_head(self) -> SubclassHead:
        check_is_fitted(self)
        return SubclassHead(self.subclass_coef_, self.subclass_intercept_,
                            self.subclass_class_, self.fictitious_mask_)

    def _linear_head(self):
        raise TypeError(
            f"{_WHO} is not one linear layer: it pools sub-class logits by "
            "log-sum-exp. Export it with to_torch() or replace_head(), which give "
            "Sequential(Linear, SubclassPooling).")

    def _shifts(self, strengths):
        strengths = [getattr(self, "strength_", 0.0) if str(s) == "auto" else s
                     for s in strengths]
        return strength_shifts(strengths, self.fictitious_mask_, self.prior_shift_)

    @property
    def edited_weights_(self):
        head = self._subclass_head()
        shift = self._shifts([self.strength])[0]
        index = np.flatnonzero(head.fictitious)
        return {
            "index": index,
            "subclass": [self.subclasses_[i] for i in index],
            "original": head.intercept[index],
            "edited": head.edited_intercept(shift)[index],
            "shift": shift[index],
        }

    def decision_function(self, X):
        """Class scores: log-sum-exp of each class's (edited) sub-class logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the score of ``classes_[1]`` minus that of
            ``classes_[0]``.
        """
        X = self._validate_X(X)
        return self._subclass_head().decision_function(
            X, self._shifts([self.strength])[0])

    def subclass_decision_function(self, X):
        """Logits of every sub-class output, with the current edit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        logits : ndarray of shape (n_samples, n_outputs)
            Columns in the order of ``subclasses_``.
        """
        X = self._validate_X(X)
        return self._subclass_head().logits(X, self._shifts([self.strength])[0])

    def strength_path(self, X, strengths=None, *, method="predict"):
        """Predictions at many strengths from one pass over ``X``.

        ``X`` times the sub-class weights is computed once; each strength only
        adds its edited biases and pools again: a curve costs about one prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        strengths : array-like of float in [0, 1] (or "prior"), default=None
            Strengths to evaluate; :func:`strength_grid` by default.
        method : {"predict", "decision_function", "predict_proba"}, default="predict"
            What to return at every strength.

        Returns
        -------
        path : ndarray of shape (n_strengths, n_samples[, n_classes])
            ``path[i]`` equals ``method(X)`` with ``strength=strengths[i]``.
        """
        return strength_path(self, self._validate_X(X), strengths, method)

    # -------------------------------------------------------------- export
    def _torch_module(self, dtype):
        import torch

        from ..torch.export import _linear_module
        from ..torch.modules import SubclassPooling

        head = self._subclass_head()
        bias = head.edited_intercept(self._shifts([self.strength])[0])
        return torch.nn.Sequential(_linear_module(head.coef, bias, dtype),
                                   SubclassPooling(head.output_class))

    def to_torch(self, dtype=None):
        """The edited head as a torch module: sub-class layer, then class pooling.

        Parameters
        ----------
        dtype : torch.dtype, default=None
            Parameter dtype; float32 by default.

        Returns
        -------
        module : torch.nn.Sequential
            ``nn.Linear(n_features, n_outputs)`` with the edited biases (``-inf``
            at strength 1), then :class:`SubclassPooling`: ``(n, n_classes)``
            logits in ``classes_`` order, a drop-in replacement for the model's
            last layer (:func:`~sklearn_spur.replace_head`).
        """
        return super().to_torch(dtype=dtype)

