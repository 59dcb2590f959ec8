"""Single-weight editing: fictitious sub-classes and the bias that removes them."""

from __future__ import annotations

import hashlib
import warnings
from numbers import Integral, Real

import joblib
import numpy as np
from scipy.special import log_softmax
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._core.base import SpurClassifierBase
from .._core.cache import LRUCache, update_hash
from .._core.groups import check_spurious, encode_groups
from .._core.heads import resolve_head
from .._core.solver import fit_logistic, standardize_stats

__all__ = ["SingleWeightEditor", "strength_grid"]

_WHO = "SingleWeightEditor"
_INFERRED_VALUES = ["confident", "other"]


def strength_grid(n_strengths=25, max_shift=8.0, *, include_one=False):
    """Strengths whose bias shifts ``-log(1 - strength)`` are evenly spaced.

    The shift that cancels a spurious prior is about the log-odds of the
    attribute given the class in the data the sub-class head was fitted on
    (``log(0.95 / 0.05) = 2.9`` at 95 % agreement, ``4.6`` at 99 %), where an
    even grid in ``strength`` is far too coarse: 0.9 and 0.99 are shifts 2.3 and
    4.6. This grid is even in the shift instead, so it is as fine near 0.95 as
    near 0.

    Parameters
    ----------
    n_strengths : int, default=25
        Number of strengths (0 included).
    max_shift : float, default=8.0
        Largest bias shift (strength ``1 - exp(-max_shift)``); 8 covers
        attribute-class agreement up to 99.97 %.
    include_one : bool, default=False
        Append strength 1 (fictitious sub-classes removed exactly).

    Returns
    -------
    strengths : ndarray of shape (n_strengths,) or (n_strengths + 1,)
        Increasing, from 0.

    Examples
    --------
    >>> from sklearn_spur import strength_grid
    >>> strength_grid(5, max_shift=4.0).round(3)
    array([0.   , 0.632, 0.865, 0.95 , 0.982])
    """
    if int(n_strengths) < 1 or not max_shift > 0:
        raise ValueError("strength_grid: n_strengths must be >= 1 and max_shift > 0.")
    strengths = -np.expm1(-np.linspace(0.0, float(max_shift), int(n_strengths)))
    return np.append(strengths, 1.0) if include_one else strengths


# The last few sub-class heads, keyed by a hash of everything the fit reads. The
# fit is deterministic, so a hit is exactly what refitting would give; only
# ``strength`` (applied at prediction time) is left out of the key.
_FIT_CACHE = LRUCache(max_entries=16)


def _copy_state(state):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}


class SingleWeightEditor(SpurClassifierBase):
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
    ``strength`` fits the sub-class head once per fold (see ``cache``).

    What the paper [1]_ states: spurious features are treated as fictitious
    sub-classes within the original classes; a precise class-removal step that
    modifies a single weight removes them; the degree of neutralization is
    controllable. Its code is unreleased. This package's reading: the
    sub-classes are (class, attribute value) pairs, or (class, confidently
    right / other) without attribute labels; the sub-class head is a
    multinomial logistic regression warm-started from the original head's row
    of the parent class; classes pool their sub-classes by log-sum-exp; the
    single weight is the bias of the fictitious output; the degree maps to it
    as ``lam = -log(1 - strength)``.

    Where the edit matters. Fitted on the spuriously correlated training data,
    the fictitious outputs' biases carry the spurious prior (about the
    log-odds of the attribute given the class, ``log(0.95/0.05) = 2.9`` at
    95 % agreement), and shifting them by that much is what removes it:
    ``strength="prior"`` does exactly that, per class. Fitted on a
    group-balanced validation set, the sub-class head is balanced already and
    the best strength is near 0 (``"prior"`` is then near 0 too).

    Without ``spurious``, the sub-classes are inferred from the original head
    (as JTT and AFR do): within class ``c``, the samples the head classifies
    correctly with probability at least ``confidence`` form the fictitious
    sub-class (the head's easy, shortcut-following cases), the others the core
    one. This works without any group annotation; fit it on held-out data the
    head was not trained on, since a head has memorised its training split.
    There, most of the gain comes from the sub-class head itself (its core
    outputs learn the cases the head gets wrong) and the best strength is near
    0, which is what ``"prior"`` gives without ``spurious``.

    Choosing the strength: :meth:`strength_path` gives predictions at many
    strengths from one pass over ``X`` (draw worst-group accuracy against
    strength on validation data and take the best), and
    ``GridSearchCV(editor, {"strength": strength_grid()},
    scoring=worst_group_scorer)`` with metadata routing does the same by
    cross-validation. :func:`strength_grid` is even in the bias shift, hence
    fine near the prior's log-odds, where the best strength usually lies
    (0.95 and above).

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer: its rows warm-start the sub-class outputs and,
        without ``spurious``, its confidence defines the sub-classes. ``None``
        fits an L2 logistic regression on ``(X, y)``. Wrap a fitted
        scikit-learn classifier in :class:`sklearn.frozen.FrozenEstimator` so
        that cloning keeps it fitted.
    strength : float in [0, 1] or "prior", default="prior"
        Degree of the edit: the bias of each fictitious output is lowered by
        ``-log(1 - strength)`` (0: no edit, 1: fictitious sub-classes removed).
        ``"prior"`` lowers each by its own log-ratio of sub-class frequencies
        in the fitting data, ``log(n_fictitious / mean n_core)`` of its class
        (``prior_shift_``, never negative): the shift that makes them as
        frequent as the core sub-classes; 0 when the sub-classes were inferred
        (without ``spurious`` their frequencies carry no spurious prior).
        Applied at prediction time.
    fictitious : {"head", "data"}, dict or tuple, default="head"
        Which attribute value is the fictitious sub-class of each class (used
        with ``spurious``):

        - ``"head"``: the value whose samples the original head assigns to
          ``c`` with the highest mean probability: the association the head
          learned from its training data, readable on balanced data too
          (with ``head=None``, the head fitted on the fitting data);
        - ``"data"``: the value most associated with ``c`` in the fitting
          data (highest ``P(value | c) / P(value)``); meaningless on a
          group-balanced set;
        - ``(y_train, spurious_train)``: the same, in the data the head was
          trained on, when it is known;
        - ``{class: value}``: named by the user.
    confidence : float in [0, 1), default=0.5
        Without ``spurious``: the probability of the true class above which a
        correctly classified sample joins its class's fictitious sub-class.
    C : float, default=1.0
        Inverse L2 regularisation of the sub-class head, in
        :class:`~sklearn.linear_model.LogisticRegression`'s scale.
    standardize : bool, default=True
        Penalise the weights on standardised embeddings (folded back, so the
        head acts on raw embeddings).
    max_iter : int, default=2000
        Maximum solver iterations.
    tol : float, default=1e-4
        Solver tolerance: stop when no gradient entry exceeds it.
    cache : bool, default=True
        Keep the last 16 fitted sub-class heads in memory, keyed by a hash of
        the embeddings, labels, attribute, head and every parameter but
        ``strength``. The fit is deterministic, so a hit gives what a refit
        would; it makes ``GridSearchCV`` over ``strength`` fit once per fold
        (per worker process with ``n_jobs``) instead of once per strength and
        fold. Hashing costs one pass over ``X``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    subclasses_ : list of tuple
        ``(class, value)`` of every output, in output order (class-major);
        ``value`` is the attribute value, or ``"confident"`` / ``"other"``
        when the sub-classes were inferred. Combinations absent from the
        fitting data get no output.
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
    prior_shift_ : ndarray of shape (n_outputs,)
        The shift ``strength="prior"`` applies (0 for core outputs, and for
        all outputs when the sub-classes were inferred).
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
    >>> y = rng.integers(0, 2, 400)
    >>> s = np.where(rng.random(400) < 0.9, y, 1 - y)  # the attribute follows y
    >>> X = np.c_[y + rng.normal(0, .7, 400), 2 * s + rng.normal(0, .3, 400)]
    >>> editor = SingleWeightEditor(strength=0.0).fit(X, y, spurious=s)
    >>> editor.subclasses_
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    >>> editor.fictitious_
    {0: 0, 1: 1}
    >>> edited = editor.set_params(strength=0.9).edited_weights_
    >>> edited["index"], edited["shift"].round(2)
    (array([0, 3]), array([2.3, 2.3]))
    """

    _parameter_constraints: dict = {
        "head": "no_validation",
        "strength": [Interval(Real, 0, 1, closed="both"), StrOptions({"prior"})],
        "fictitious": [StrOptions({"head", "data"}), dict, tuple],
        "confidence": [Interval(Real, 0, 1, closed="left")],
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "cache": ["boolean"],
    }

    def __init__(self, head=None, *, strength="prior", fictitious="head",
                 confidence=0.5, C=1.0, standardize=True, max_iter=2000, tol=1e-4,
                 cache=True):
        self.head = head
        self.strength = strength
        self.fictitious = fictitious
        self.confidence = confidence
        self.C = C
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.cache = cache

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, spurious=None):
        """Fit the sub-class head (the edit itself is applied at prediction time).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), \
                default=None
            Spurious attribute: sub-classes are (class, value) pairs. Without
            it they are inferred from the head's confidence. Routed by
            metadata routing.

        Returns
        -------
        self : SingleWeightEditor
        """
        X, y, s = self._validate_fit_inputs(X, y, spurious)
        if s is None and not isinstance(self.fictitious, str):
            raise ValueError(
                f"{_WHO}: fictitious={type(self.fictitious).__name__} names attribute "
                "values, but no `spurious` was given; pass `spurious=` or leave "
                "fictitious='head' (without it the confidently right samples of each "
                "class form its fictitious sub-class)."
            )
        head = None if self.head is None else resolve_head(self.head, X, y, who=_WHO)
        key = self._cache_key(X, y, s, head) if self.cache else None
        state = None if key is None else _FIT_CACHE.get(key)
        if state is None:
            if head is None:
                head = resolve_head(None, X, y, who=_WHO)
            state = self._fit_state(X, y, s, head)
            if key is not None:
                _FIT_CACHE.put(key, _copy_state(state))
        else:
            state = _copy_state(state)
        for name, value in state.items():
            setattr(self, name, value)
        return self

    def _cache_key(self, X, y, s, head):
        h = hashlib.sha256()  # hardware-accelerated on most CPUs: ~2x blake2b here
        update_hash(h, X)
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in ("head", "strength", "cache")}
        small = (type(self).__qualname__, params, y, s,
                 None if head is None else (head.coef, head.intercept, head.classes))
        h.update(joblib.hash(small).encode())
        return h.hexdigest()

    def _subclasses(self, y_idx, s, head, X):
        """Sub-class code per sample, values, counts and fictitious value per class."""
        n_classes = len(self.classes_)
        if s is None:
            head_pos = self._head_positions(head)
            proba = head.predict_proba(X)
            rows = np.arange(len(y_idx))
            right = proba.argmax(axis=1) == head_pos[y_idx]
            confident = right & (proba[rows, head_pos[y_idx]] >= self.confidence)
            codes = 2 * y_idx + (~confident)
            values = list(_INFERRED_VALUES)
            fict_value = np.zeros(n_classes, np.int64)  # "confident"
        else:
            groups = encode_groups(self.classes_[y_idx], s)
            codes, values = groups.codes, groups.values
            fict_value = self._fictitious_values(y_idx, groups, head, X)
        counts = np.bincount(codes, minlength=n_classes * len(values))
        return codes, values, counts, fict_value

    def _head_positions(self, head):
        """Row of the head (in its own class order) of every class in ``classes_``."""
        order = np.argsort(head.classes, kind="stable")
        return order[np.searchsorted(head.classes, self.classes_, sorter=order)]

    def _fictitious_values(self, y_idx, groups, head, X):
        """Index into ``groups.values`` of each class's fictitious value."""
        n_values = len(groups.values)
        table = groups.counts.reshape(len(self.classes_), n_values).astype(np.float64)
        present = table > 0
        rule = self.fictitious
        if isinstance(rule, dict):
            lookup = {v: j for j, v in enumerate(groups.values)}
            unknown_classes = set(rule) - set(self.classes_.tolist())
            unknown_values = [v for v in rule.values() if v not in lookup]
            if unknown_classes or unknown_values:
                raise ValueError(
                    f"{_WHO}: fictitious names classes "
                    f"{sorted(unknown_classes, key=str)} or values {unknown_values} "
                    "absent from the fitting data (classes "
                    f"{self.classes_.tolist()}, values {groups.values})."
                )
            return np.array([lookup[rule[c]] if c in rule else -1
                             for c in self.classes_.tolist()])
        if isinstance(rule, tuple):
            if len(rule) != 2:
                raise ValueError(
                    f"{_WHO}: fictitious as a tuple must be (y_train, spurious_train), "
                    "the labels of the data the head was trained on; got "
                    f"{len(rule)} items."
                )
            y_tr = np.asarray(rule[0])
            s_tr = check_spurious(rule[1], y_tr.shape[0], who=_WHO,
                                  name="fictitious[1]")
            other = encode_groups(y_tr, s_tr)
            pos_c = {c: i for i, c in enumerate(self.classes_.tolist())}
            pos_v = {v: j for j, v in enumerate(groups.values)}
            table = np.zeros_like(table)
            for g, count in enumerate(other.counts):  # groups, not samples
                c, v = other.label(g)
                if c in pos_c and v in pos_v:
                    table[pos_c[c], pos_v[v]] = count
            association = table / np.maximum(table.sum(0, keepdims=True), 1)
        elif rule == "data":
            association = table / np.maximum(table.sum(0, keepdims=True), 1)
        else:  # "head": mean head probability of class c among samples with value v
            proba = head.predict_proba(X)[:, self._head_positions(head)]  # (n, C)
            s_codes = groups.codes % n_values
            sums = np.zeros((n_values, len(self.classes_)))
            np.add.at(sums, s_codes, proba)
            association = (sums / np.maximum(np.bincount(s_codes, minlength=n_values),
                                             1)[:, None]).T
        # P(c | v) ranks values like the lift P(v | c) / P(v) within a class.
        association = np.where(present, association, -np.inf)
        top = association.max(axis=1, keepdims=True)
        tied = np.isfinite(top[:, 0]) & ((association >= top - 1e-9).sum(axis=1) > 1)
        if tied.any():
            warnings.warn(
                f"{_WHO}: classes {self.classes_[tied].tolist()[:10]} are equally "
                "associated with several attribute values in "
                + ("the training labels" if isinstance(rule, tuple) else repr(rule))
                + " (a balanced set?); the first is taken as fictitious. Use "
                "fictitious='head', the head's training labels, or a {class: value} "
                "mapping.",
                UserWarning, stacklevel=4,
            )
        return association.argmax(axis=1)

    def _fit_state(self, X, y, s, head):
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        y_idx = y_idx.ravel()
        n_classes = len(self.classes_)
        codes, values, counts, fict_value = self._subclasses(y_idx, s, head, X)
        n_values = len(values)
        outputs = np.flatnonzero(counts)
        remap = np.full(counts.shape[0], -1)
        remap[outputs] = np.arange(len(outputs))
        sub_idx = remap[codes]
        out_class = outputs // n_values
        out_counts = counts[outputs]
        class_counts = np.bincount(y_idx, minlength=n_classes)

        # One fictitious output per class that also has a core output.
        fict_code = np.arange(n_classes) * n_values + fict_value
        n_outputs_per_class = np.bincount(out_class, minlength=n_classes)
        editable = (fict_value >= 0) & (n_outputs_per_class >= 2)
        editable &= counts[np.where(fict_value >= 0, fict_code, 0)] > 0
        skipped = [c for c, ok in zip(self.classes_.tolist(), editable) if not ok]
        if skipped:
            warnings.warn(
                f"{_WHO}: classes {skipped[:10]} have no fictitious sub-class with "
                "both it and a core sub-class present in the fitting data; their "
                "outputs are not edited.", UserWarning, stacklevel=3,
            )
        mask = np.zeros(len(outputs), bool)
        mask[remap[fict_code[editable]]] = True

        # Warm start: the parent class's row, its bias split by sub-class frequency,
        # so the pooled class logits start exactly at the original head's.
        w_full, b_full = head.full()
        rows = self._head_positions(head)[out_class]
        coef_init = w_full[rows].astype(X.dtype)
        intercept_init = (b_full[rows] + np.log(out_counts / class_counts[out_class])
                          ).astype(X.dtype)
        K = len(outputs)
        if K == 2:  # one sub-class per class: fit_logistic's single-logit form
            coef_init = coef_init[1:] - coef_init[:1]
            intercept_init = intercept_init[1:] - intercept_init[:1]
        mean, scale = standardize_stats(X) if self.standardize else (None, None)
        fit = fit_logistic(X, sub_idx, K, l2=1.0 / (self.C * X.shape[0]), mean=mean,
                           scale=scale, coef_init=coef_init,
                           intercept_init=intercept_init, max_iter=self.max_iter,
                           tol=self.tol)
        if not fit.converged.all():
            warnings.warn(
                f"{_WHO}: the sub-class head did not converge in {self.max_iter} "
                "iterations; increase max_iter or lower C.", ConvergenceWarning,
                stacklevel=3,
            )
        coef, intercept = fit.coef[0], fit.intercept[0]
        if K == 2:
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.concatenate([-intercept / 2, intercept / 2])

        core_mean = (np.bincount(out_class, weights=np.where(mask, 0, out_counts),
                                 minlength=n_classes)
                     / np.maximum(n_outputs_per_class - 1, 1))
        with np.errstate(divide="ignore"):
            prior = np.log(out_counts / np.maximum(core_mean[out_class], 1e-300))
        # Without attribute labels the "other" sub-class is the head's hard cases, not
        # a group: its rarity is no spurious prior, so "prior" does not edit.
        prior_shift = np.where(mask & (s is not None), np.maximum(prior, 0), 0.0
                               ).astype(X.dtype)
        class_list = self.classes_.tolist()

        return {
            "classes_": self.classes_,
            "subclasses_": [(class_list[code // n_values], values[code % n_values])
                            for code in outputs.tolist()],
            "subclass_class_": out_class,
            "subclass_coef_": coef,
            "subclass_intercept_": intercept,
            "subclass_counts_": out_counts,
            "fictitious_mask_": mask,
            "fictitious_": {class_list[c]: values[fict_value[c]]
                            for c in np.flatnonzero(editable)},
            "prior_shift_": prior_shift,
            "n_iter_": fit.n_iter,
        }

    # ----------------------------------------------------------- the edit
    def _shifts(self, strengths):
        """Bias shift of every output at each strength: (n_strengths, n_outputs)."""
        rows = []
        for strength in strengths:
            if isinstance(strength, str) and strength == "prior":
                rows.append(self.prior_shift_)
                continue
            numeric = isinstance(strength, Real) and not isinstance(strength, bool)
            if not (numeric and 0 <= strength <= 1):
                raise ValueError(
                    f"{_WHO}: strength must be in [0, 1] or 'prior', got {strength!r}."
                )
            with np.errstate(divide="ignore"):
                lam = -np.log1p(-float(strength))
            rows.append(np.where(self.fictitious_mask_, lam, 0.0))
        return np.array(rows, dtype=np.float64)

    def _edited_intercept(self, shift):
        b = self.subclass_intercept_
        return np.where(self.fictitious_mask_, b - shift.astype(b.dtype), b)

    @property
    def edited_weights_(self):
        check_is_fitted(self)
        shift = self._shifts([self.strength])[0]
        index = np.flatnonzero(self.fictitious_mask_)
        return {
            "index": index,
            "subclass": [self.subclasses_[i] for i in index],
            "original": self.subclass_intercept_[index],
            "edited": self._edited_intercept(shift)[index],
            "shift": shift[index],
        }

    def _pool(self, S):
        """Class scores from sub-class logits (log-sum-exp per class)."""
        starts = np.flatnonzero(np.r_[True, np.diff(self.subclass_class_) != 0])
        m = np.maximum.reduceat(S, starts, axis=1)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):
            lse = np.log(np.add.reduceat(np.exp(S - m[:, self.subclass_class_]), starts,
                                         axis=1)) + m
        return lse[:, 1] - lse[:, 0] if lse.shape[1] == 2 else lse

    def _subclass_logits(self, X, shift):
        logits = X @ self.subclass_coef_.T.astype(X.dtype, copy=False)
        return logits + self._edited_intercept(shift).astype(X.dtype)

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
        return self._pool(self._subclass_logits(X, self._shifts([self.strength])[0]))

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
        return self._subclass_logits(X, self._shifts([self.strength])[0])

    def strength_path(self, X, strengths=None, *, method="predict"):
        """Predictions at many strengths from one pass over ``X``.

        The product of ``X`` with the sub-class weights is computed once; each
        strength only adds its edited biases and pools again, so a whole curve
        costs about one prediction.

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
        if method not in ("predict", "decision_function", "predict_proba"):
            raise ValueError(
                f"{_WHO}: method must be 'predict', 'decision_function' or "
                f"'predict_proba', got {method!r}."
            )
        X = self._validate_X(X)
        if strengths is None:
            strengths = strength_grid()
        if isinstance(strengths, np.ndarray):
            strengths = list(np.ravel(strengths))
        elif np.isscalar(strengths):
            strengths = [strengths]
        shifts = self._shifts(strengths)
        logits = X @ self.subclass_coef_.T.astype(X.dtype, copy=False)
        out = []
        for shift in shifts:  # strengths, not samples
            # The very operations of decision_function, so each row equals it exactly.
            scores = self._pool(logits + self._edited_intercept(shift).astype(X.dtype))
            if method == "predict":
                idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)
                scores = self.classes_[idx]
            elif method == "predict_proba":
                if scores.ndim == 1:
                    scores = np.stack([np.zeros_like(scores), scores], axis=1)
                scores = np.exp(log_softmax(scores, axis=1))
            out.append(scores)
        return np.stack(out)

    # -------------------------------------------------------------- export
    def _torch_module(self, dtype):
        import torch

        from ..torch.modules import SubclassPooling

        check_is_fitted(self)
        W = self.subclass_coef_
        b = self._edited_intercept(self._shifts([self.strength])[0])
        layer = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(W, dtype=dtype))
            layer.bias.copy_(torch.as_tensor(b, dtype=dtype))
        return torch.nn.Sequential(layer, SubclassPooling(self.subclass_class_))

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
        from ..torch.export import to_torch

        return to_torch(self, dtype=dtype)
