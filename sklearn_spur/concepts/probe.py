"""Concept directions of the spurious attribute: find them, measure them, remove them.

:class:`SpuriousProbe` learns unit directions of embedding space that encode the
spurious attribute (the concept activation vectors of Dreyer, Pahde et al.),
reports how well they separate it and how much a head relies on them, and
projects them out (P-ClArC). :class:`RRClArCClassifier` refits the last layer
with the RR-ClArC penalty ``lam * ||W v||^2``, which for a linear head on the
embeddings is the gradient of the logits along ``v``.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core.base import FLOAT_DTYPES, _check_X_form
from .._core.groups import (
    balanced_weights,
    check_labels,
    check_spurious,
    host_array,
    missing_spurious_message,
)
from .._core.heads import resolve_head
from .._core.solver import fit_logistic, standardize_stats
from ..exceptions import MissingSpuriousError

__all__ = ["SpuriousProbe"]

PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# A direction whose residual after projecting out the previous ones is below
# this (the directions are unit vectors) adds no new dimension: it is dropped.
_RANK_TOL = 1e-3


def _auc(t, score):
    """ROC AUC of ``score`` for the boolean ``t``; NaN when ``t`` is constant."""
    if t.all() or not t.any():
        return np.nan
    return float(roc_auc_score(t, score))


def _class_codes(y, n, within_class):
    """Class index of every sample and the classes (one pseudo-class without y)."""
    if y is None or not within_class:
        return np.zeros(n, dtype=np.intp), np.array([None], dtype=object)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.ravel(), classes


def _orthonormalize(D):
    """Gram-Schmidt on the rows of ``D`` (float64), dropping dependent rows.

    The first row is kept exactly (up to normalisation), so a single concept's
    direction is its own basis.
    """
    basis = []
    for row in D:
        v = row.astype(np.float64, copy=True)
        for _ in range(2):  # re-orthogonalise once, for float32-sized errors
            for b in basis:
                v -= (b @ v) * b
        norm = np.linalg.norm(v)
        if norm > _RANK_TOL * max(np.linalg.norm(row), np.finfo(float).tiny):
            basis.append(v / norm)
    return np.array(basis).reshape(-1, D.shape[1])


class SpuriousProbe(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Concept directions of the spurious attribute, with their diagnostics and removal.

    ``fit`` learns unit directions of embedding space that encode the spurious
    attribute; ``transform`` removes them (P-ClArC projection)::

        z' = z - strength * (z . v - r) v

    with ``r`` a reference projection, for every direction ``v`` (several
    directions are orthonormalised first, then removed together).

    Directions (``direction=``):

    - ``"pattern"`` (default): the "signal" CAV ``cov(z, t) / var(t)`` of Pahde
      et al., ``mean(z | t=1) - mean(z | t=0)`` for a binary concept label ``t``.
      It is the robust choice: classifier-based directions follow the noise
      structure of the embeddings (a filter ``~ Sigma^-1 a``), the pattern
      direction follows the concept itself (``a``). It costs one product
      ``X.T @ T``.
    - ``"svm"``, ``"logistic"``, ``"ridge"``, ``"lasso"``: the weight vector of
      a linear model predicting ``t`` from ``z`` (linear SVM, L2 logistic
      regression, ridge classifier, L1-penalised logistic regression),
      class-balanced in ``t``, fitted on standardised embeddings with ``C``
      chosen from ``Cs`` by ``cv``-fold cross-validated ROC AUC, and mapped back
      to raw embedding space.

    With ``within_class=True`` (default) and ``y`` given, the direction is
    estimated within each class and pooled, so it does not absorb the class
    signal when the attribute is correlated with the class (the pattern
    direction is then ``sum_c w_c (mean(z | c, t=1) - mean(z | c, t=0))`` with
    weights ``w_c = n_c p_c (1 - p_c)``, ``p_c`` the concept's share in class
    ``c``; classifier directions are fitted per class, normalised and pooled
    with the same weights). Classes in which the concept is constant contribute
    nothing.

    Concept labels ``t`` come from ``spurious``: a binary attribute gives one
    direction (``t = spurious == concept``, the larger value by default); an
    attribute with ``K > 2`` values gives one direction per value (one versus
    rest), of rank at most ``K - 1`` for the pattern direction; several
    attribute columns give the directions of each column. All are
    orthonormalised together into :attr:`directions_`.

    Annotation-free mode: without ``spurious`` but with ``head=`` (the trained
    last layer) and ``y``, the concept is "the head gets this sample wrong":
    within each class the direction ``mean(z | wrong) - mean(z | right)``,
    sign-aligned across classes (leading singular vector of the per-class
    directions). Fit it on held-out data (where the head makes mistakes), not
    on the data the head was trained on. Use it when there are no attribute
    labels and the head's mistakes are mostly minority-group samples (a strong
    shortcut): the direction then points along the shortcut. It also carries
    class signal (mistakes are atypical members of their class), so removing it
    blindly can cost accuracy when the head's mistakes are not caused by one
    shortcut; check :attr:`separability_` and a held-out worst-class accuracy
    before relying on it. With more than two classes, each class's mistakes
    point towards the classes they are mistaken for, so one pooled direction
    captures little of them (on 3-class WaterDigits it barely helps); it is
    meant for the binary, one-shortcut case.

    Parameters
    ----------
    direction : {"pattern", "svm", "logistic", "ridge", "lasso"}, default="pattern"
        How each concept direction is estimated (see above).
    within_class : bool, default=True
        Estimate directions within each class of ``y`` and pool them. Ignored
        when ``y`` is not given.
    pooling : {"mean", "span"}, default="mean"
        How the per-class directions of a concept are combined. ``"mean"``:
        their weighted mean, one direction per concept. ``"span"``: every
        class's own direction (``(concept, class)`` in :attr:`concepts_`), all
        orthonormalised together. The attribute often moves the embeddings of
        different classes along different directions; ``"span"`` removes all of
        them (at the cost of more removed dimensions), ``"mean"`` leaves their
        class-specific parts, which a linear model can still read within a
        class.
    concept : scalar, default=None
        The attribute value that is the concept (``t = spurious == concept``).
        ``None``: the larger of two values, or every value (one versus rest)
        when there are more. Only for a single attribute column.
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer. Used by the annotation-free mode (when
        ``spurious`` is not given) and as the default of
        :meth:`head_sensitivity`. Wrap a fitted scikit-learn classifier in
        :class:`sklearn.frozen.FrozenEstimator` so that cloning keeps it fitted.
    strength : float in [0, 1], default=1.0
        How much of each direction's component is removed by :meth:`transform`;
        1 sets every sample's projection to the reference, 0 changes nothing.
    reference : {"absent", "mean", "zero"}, float or array-like, default="absent"
        The projection ``r`` that :meth:`transform` moves samples towards.
        ``"absent"``: the mean projection of the fit samples without the concept
        (``t = 0``; for the annotation-free mode, the correctly classified
        ones); with several directions, the point of their span whose
        projection on each concept direction matches that mean, in the least
        squares sense. ``"mean"``: the mean projection of all fit samples.
        ``"zero"``: ``r = 0``, a linear projection. A float or an array of shape
        ``(n_directions,)`` gives ``r`` in the coordinates of
        :attr:`directions_`. With a downstream classifier refit on the
        projected embeddings, ``r`` only moves its intercept.
    Cs : array-like of float, default=(1e-3, 1e-2, 0.1, 1, 10, 100, 1000)
        Inverse regularisation strengths tried by the classifier directions
        (``alpha = 1 / C`` for ridge). Ignored by ``"pattern"``.
    cv : int, default=3
        Folds of the internal cross-validation of the classifier directions.
    random_state : int, RandomState instance or None, default=None
        Controls the cross-validation folds of the classifier directions.

    Attributes
    ----------
    concept_directions_ : ndarray of shape (n_concepts, n_features)
        One unit direction per concept, oriented towards the concept
        (``t = 1``), in the order of :attr:`concepts_`.
    directions_ : ndarray of shape (n_directions, n_features)
        Orthonormal basis of the concept directions' span (Gram-Schmidt in the
        order of :attr:`concepts_`, dependent ones dropped): what
        :meth:`transform` removes.
    reference_ : ndarray of shape (n_directions,)
        The projection ``r`` on each row of :attr:`directions_`.
    concepts_ : list
        What each concept direction encodes: the attribute value (one column),
        ``(column, value)`` (several columns), or ``"mistake"`` (annotation-free);
        with ``pooling="span"``, ``(that, class)`` for every class.
    separability_ : ndarray of shape (n_concepts,)
        ROC AUC of the concept scores for the concept label on the fit data,
        averaged over the classes in which both labels occur when ``y`` was
        given and ``within_class`` (in the annotation-free mode, for the head's
        mistakes, with each class's sign). 0.5: no separation, 1: perfect.
    annotation_free_ : bool
        Whether the directions come from the head's mistakes (no ``spurious``).
    mistake_signs_ : ndarray of shape (n_classes,) or None
        Annotation-free mode: +1 where the class's mistakes lie on the positive
        side of the direction, -1 where on the negative side, 0 for a class
        without both mistakes and successes. ``None`` otherwise.
    C_ : ndarray of shape (n_concepts,) or None
        The regularisation chosen for each concept (classifier directions; the
        most frequent choice over classes), ``None`` for ``"pattern"``.
    n_features_in_ : int
        Number of embedding dimensions.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Defined when ``X`` has string column names.

    See Also
    --------
    RRClArCClassifier : Refit the head with the RR-ClArC penalty on these directions.
    DFRClassifier : Group-balanced last-layer retraining.

    References
    ----------
    .. [1] M. Dreyer, F. Pahde, C. J. Anders, W. Samek, S. Lapuschkin, "From Hope
       to Safety: Unlearning Biases of Deep Models via Gradient Penalization in
       Latent Space", AAAI 2024 (arXiv:2308.09437, 2023).
    .. [2] F. Pahde, M. Dreyer, L. Weber, M. Weckbecker, C. J. Anders, T. Wiegand,
       W. Samek, S. Lapuschkin, "Navigating Neural Space: Revisiting Concept
       Activation Vectors to Overcome Directional Divergence", ICLR 2025
       (arXiv:2202.03482).
    .. [3] S. Haufe et al., "On the interpretation of weight vectors of linear
       models in multivariate neuroimaging", NeuroImage 87, 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import SpuriousProbe
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 500); s = rng.integers(0, 2, 500)
    >>> X = np.c_[y + rng.normal(0, .5, 500), 3 * s + rng.normal(0, .5, 500)]
    >>> probe = SpuriousProbe().fit(X, y, spurious=s)
    >>> probe.concepts_, bool(abs(probe.directions_[0, 1]) > 0.99)
    ([1], True)
    >>> bool(probe.separability_[0] > 0.99)
    True
    >>> Xp = probe.transform(X)  # every concept score is now the reference
    >>> bool(np.allclose(probe.concept_scores(Xp), probe.reference_))
    True
    """

    __metadata_request__fit = {"spurious": True}
    _label_free = False  # needs `spurious`, or `head=` for the annotation-free mode

    _parameter_constraints: dict = {
        "direction": [StrOptions({"pattern", "svm", "logistic", "ridge", "lasso"})],
        "within_class": ["boolean"],
        "pooling": [StrOptions({"mean", "span"})],
        "concept": "no_validation",
        "head": "no_validation",
        "strength": [Interval(Real, 0, 1, closed="both")],
        "reference": [StrOptions({"absent", "mean", "zero"}), Real, "array-like"],
        "Cs": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, direction="pattern", *, within_class=True, pooling="mean",
                 concept=None, head=None, strength=1.0, reference="absent", Cs=PROBE_CS,
                 cv=3, random_state=None):
        self.direction = direction
        self.within_class = within_class
        self.pooling = pooling
        self.concept = concept
        self.head = head
        self.strength = strength
        self.reference = reference
        self.Cs = Cs
        self.cv = cv
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _validate_inputs(self, X, y, spurious):
        X, y = host_array(X), host_array(y)
        _check_X_form(X, "SpuriousProbe")
        if y is not None:
            check_labels(np.asarray(y), "y")
        if y is None:
            X = validate_data(self, X, dtype=FLOAT_DTYPES)
        else:
            X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
            check_classification_targets(y)
        if X.shape[0] < 2:
            raise ValueError(
                "SpuriousProbe needs at least 2 samples to estimate a direction; got "
                "1 sample."
            )
        s = check_spurious(spurious, X.shape[0], who="SpuriousProbe", required=False)
        return X, y, s

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, spurious=None):
        """Learn the concept directions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,), default=None
            Class labels: the directions are estimated within each class
            (``within_class``). Required by the annotation-free mode.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), default=None
            Spurious attribute. Without it, ``head`` must be given (annotation-free
            mode). Routed by metadata routing (requested by default).

        Returns
        -------
        self : SpuriousProbe
        """
        X, y, s = self._validate_inputs(X, y, spurious)
        codes, classes = _class_codes(y, X.shape[0], self.within_class)
        self.C_ = None
        self.mistake_signs_ = None
        if s is None:
            if self.head is None:
                raise MissingSpuriousError(
                    missing_spurious_message("SpuriousProbe")
                    + " Without attribute labels, pass `head=` (the trained last "
                    "layer) and y to learn the direction of the head's mistakes."
                )
            if y is None:
                raise ValueError(
                    "SpuriousProbe: the annotation-free mode (no `spurious`, a "
                    "`head`) needs the class labels y to find the head's mistakes."
                )
            head = resolve_head(self.head, X, y, who="SpuriousProbe")
            T = (head.predict(X) != y)[:, None]
            names = ["mistake"]
            codes, classes = _class_codes(y, X.shape[0], True)
            self.annotation_free_ = True
        else:
            T, names = self._concept_labels(s)
            self.annotation_free_ = False
        cells = self._cells(T, codes, len(classes), names)
        if self.annotation_free_ and not cells:
            raise ValueError(
                "SpuriousProbe: the head makes no mistake (or no correct prediction) "
                "within any class of these data, so there is no mistake direction. "
                "Fit on held-out data, not on the data the head was trained on."
            )
        units, weights, Cs = self._cell_directions(X, T, codes, cells)
        rows = self._pool(units, weights, cells, classes, names)
        D = np.array([d for d, _, _ in rows]).reshape(-1, X.shape[1])
        self.concepts_ = [name for _, name, _ in rows]
        # Private bookkeeping for separability(): the concept (index into
        # _concept_ids) and class (index into _classes, None if pooled) of each row.
        self._rows = [(j, c) for _, _, (j, c) in rows]
        self._concept_ids, self._classes = names, classes
        if Cs is not None and D.shape[0]:
            # per row: the C chosen most often over the cells of its concept
            self.C_ = np.array([
                self._mode([C for (j, _), C in zip(cells, Cs, strict=True) if j == row])
                for row, _ in self._rows])
        self.separability_ = self._separability(
            X @ D.T.astype(X.dtype), T, codes, self._rows, self.mistake_signs_)
        self.concept_directions_ = D.astype(X.dtype)
        self.directions_ = _orthonormalize(D).astype(X.dtype)
        self.reference_ = self._reference(X, D, ~T[:, [j for j, _ in self._rows]])
        return self

    @staticmethod
    def _mode(values):
        vals, counts = np.unique(values, return_counts=True)
        return float(vals[np.argmax(counts)])

    def _concept_labels(self, s):
        """Boolean concept labels ``T`` (n, n_concepts) and their names."""
        if s.ndim == 2 and self.concept is not None:
            raise ValueError(
                "SpuriousProbe: `concept` selects a value of a single attribute; with "
                f"{s.shape[1]} attribute columns leave it None."
            )
        columns = [s] if s.ndim == 1 else [s[:, j] for j in range(s.shape[1])]
        labels, names = [], []
        for j, col in enumerate(columns):
            values = np.unique(col)
            where = "" if s.ndim == 1 else f" (column {j})"
            if self.concept is not None and not np.any(values == self.concept):
                raise ValueError(
                    f"SpuriousProbe: concept={self.concept!r} is not a value of the "
                    f"spurious attribute (values: {values.tolist()[:10]})."
                )
            if len(values) < 2:
                warnings.warn(
                    f"SpuriousProbe: the spurious attribute{where} has a single value "
                    f"({values[0]!r}) in these data: there is no concept to separate, "
                    "so it gives no direction.",
                    UserWarning,
                    stacklevel=4,
                )
                continue
            if self.concept is not None:
                chosen = [self.concept]
            else:
                chosen = values[1:] if len(values) == 2 else values
            for v in chosen:
                labels.append(col == v)
                v = v.item() if hasattr(v, "item") else v
                names.append(v if s.ndim == 1 else (j, v))
        if not labels:
            return np.zeros((s.shape[0], 0), bool), names
        return np.stack(labels, axis=1), names

    def _cells(self, T, codes, n_classes, names):
        """The (concept, class) pairs in which both labels occur.

        A concept constant within every class is estimated across classes
        (class ``None``), with a warning: it is confounded with the class.
        """
        n_pos = np.zeros((T.shape[1], n_classes))
        for j in range(T.shape[1]):
            n_pos[j] = np.bincount(codes, weights=T[:, j], minlength=n_classes)
        n_all = np.bincount(codes, minlength=n_classes)
        cells, confounded = [], []
        for j in range(T.shape[1]):
            mixed = np.flatnonzero((n_pos[j] > 0) & (n_pos[j] < n_all))
            if mixed.size:
                cells += [(j, int(c)) for c in mixed]
            elif not self.annotation_free_:
                confounded.append(names[j])
                cells.append((j, None))
        if confounded:
            warnings.warn(
                f"SpuriousProbe: the concept(s) {confounded[:5]} are constant within "
                "every class (the attribute is confounded with the class in these "
                "data), so they were estimated across classes and their direction "
                "also carries the class signal. Fit on data where the attribute varies "
                "within a class (e.g. a group-balanced validation split).",
                UserWarning,
                stacklevel=4,
            )
        return cells

    def _cell_directions(self, X, T, codes, cells):
        """Direction and weight ``n p (1 - p)`` of every (concept, class) cell.

        ``"pattern"`` (and the annotation-free mode): ``mean(z | t=1) -
        mean(z | t=0)`` within the cell (not normalised: their weighted sum is
        the pooled ``cov(z, t) / var(t)``), all cells of a concept from one
        product ``X.T @ M``. Classifier directions: the unit weight vector of
        one t-balanced model per cell.
        """
        n_cells = len(cells)
        units = np.zeros((n_cells, X.shape[1]))
        weights = np.zeros(n_cells)
        Cs = None if self.direction == "pattern" or self.annotation_free_ else []
        if Cs is not None:
            rng = check_random_state(self.random_state)
            grid = np.asarray(self.Cs, dtype=np.float64).ravel()
            if grid.size == 0 or np.any(grid <= 0):
                raise ValueError("SpuriousProbe: Cs must hold positive values.")
        for j in np.unique([j for j, _ in cells]):
            mine = [k for k, (jj, _) in enumerate(cells) if jj == j]
            members = [np.flatnonzero(codes == cells[k][1]) if cells[k][1] is not None
                       else np.arange(X.shape[0]) for k in mine]
            for k, idx in zip(mine, members):
                p = T[idx, j].mean()
                weights[k] = len(idx) * p * (1 - p)
            if Cs is None:
                # One pass: sums of z over the (cell, t) pairs of this concept.
                M = np.zeros((X.shape[0], 2 * len(mine)), X.dtype)
                for i, idx in enumerate(members):
                    M[idx, 2 * i + T[idx, j]] = 1
                sums = (X.T @ M).T.astype(np.float64)
                counts = M.sum(axis=0, dtype=np.float64)[:, None]
                means = sums / counts
                units[mine] = means[1::2] - means[0::2]
            else:
                for k, idx in zip(mine, members):
                    t = T[idx, j]
                    n_min = min(int(t.sum()), len(t) - int(t.sum()))
                    Xc = X if len(idx) == X.shape[0] else X[idx]
                    w, C = self._fit_concept_model(Xc, t, grid, min(self.cv, n_min),
                                                   rng)
                    units[k] = self._normalize(w[None])[0]
                    Cs.append(C)
        return units, weights, Cs

    def _pool(self, units, weights, cells, classes, names):
        """Rows ``(direction, name, (concept, class))`` after pooling the cells."""
        rows = []
        for j in range(len(names)):
            mine = [k for k, (jj, _) in enumerate(cells) if jj == j]
            if not mine:
                continue
            if self.pooling == "span" and len(mine) > 1:
                for k in mine:
                    label = classes[cells[k][1]]
                    label = label.item() if hasattr(label, "item") else label
                    rows.append((self._normalize(units[k][None])[0], (names[j], label),
                                 cells[k]))
            elif self.annotation_free_:
                rows.append((self._aligned(self._normalize(units[mine]), weights[mine],
                                           cells, mine, len(classes)),
                             names[j], (j, None)))
            else:
                pooled = weights[mine] @ units[mine]
                rows.append((self._normalize(pooled[None])[0], names[j], (j, None)))
        return rows

    def _aligned(self, units, weights, cells, mine, n_classes):
        """Sign-aligned pooling of the per-class mistake directions.

        In class ``c`` the mistakes lie on the side of the class they are
        mistaken for, so the per-class directions of two classes sharing one
        shortcut point in opposite senses: their leading singular vector is the
        shared direction, whatever the signs.
        """
        _, _, vt = np.linalg.svd(units * np.sqrt(weights)[:, None],
                                 full_matrices=False)
        u = vt[0]
        signs = np.sign(units @ u)
        if signs[0] < 0:  # deterministic orientation: the first class's mistakes +
            u, signs = -u, -signs
        self.mistake_signs_ = np.zeros(n_classes)
        self.mistake_signs_[[cells[k][1] for k in mine]] = signs
        return u

    @staticmethod
    def _normalize(D):
        norms = np.linalg.norm(D, axis=1)
        if np.any(norms == 0):
            raise ValueError(
                "SpuriousProbe: a concept direction is zero (the concept leaves the "
                "embeddings unchanged on average, or every coefficient of its model "
                "was shrunk to zero); try another `direction` or larger `Cs`."
            )
        return D / norms[:, None]

    def _fit_concept_model(self, X, t, Cs, n_folds, rng):
        """Weights (raw embedding space) of the chosen model for ``t`` and its C."""
        mean, scale = standardize_stats(X)
        seed = rng.randint(np.iinfo(np.int32).max)
        if n_folds >= 2 and len(Cs) > 1:
            folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed)
                         .split(np.zeros((len(t), 1)), t))
            auc = np.zeros((n_folds, len(Cs)))
            for f, (train, test) in enumerate(folds):
                scores = self._concept_scores_cv(X, t, train, test, Cs, mean, scale,
                                                 seed)
                auc[f] = [_auc(t[test], scores[:, k]) for k in range(len(Cs))]
            C = float(Cs[int(np.argmax(np.nanmean(auc, axis=0)))])
        else:
            C = float(Cs[len(Cs) // 2])
        w = self._concept_weights(X, t, [C], mean, scale, seed)[0]
        return w, C

    def _concept_scores_cv(self, X, t, train, test, Cs, mean, scale, seed):
        if self.direction in ("logistic", "lasso"):
            # One batched solve for every C (the solver's B problems).
            W = self._concept_weights(X, t, Cs, mean, scale, seed, subset=train)
        else:
            W = self._concept_weights(X[train], t[train], Cs, mean, scale, seed)
        return X[test] @ W.T.astype(X.dtype)

    def _concept_weights(self, X, t, Cs, mean, scale, seed, subset=None):
        """Raw-space weight vector for each C, shape (len(Cs), n_features)."""
        if self.direction in ("logistic", "lasso"):
            weights = np.zeros(len(t), X.dtype)
            sel = np.arange(len(t)) if subset is None else subset
            weights[sel] = balanced_weights(t[sel])
            pen = 1.0 / (np.asarray(Cs) * weights.sum())
            key = "l1" if self.direction == "lasso" else "l2"
            fit = fit_logistic(X, t.astype(np.intp), 2, weights=weights,
                               **{key: pen}, mean=mean, scale=scale,
                               max_iter=1000, tol=1e-4)
            return fit.coef[:, 0, :].astype(np.float64)
        Xs = (X - mean) / scale
        out = []
        with warnings.catch_warnings():
            # LinearSVC on a tiny or separable split may stop early; the CV picks
            # a C whose direction generalises regardless.
            warnings.simplefilter("ignore", ConvergenceWarning)
            for C in Cs:
                if self.direction == "ridge":
                    from sklearn.linear_model import RidgeClassifier

                    model = RidgeClassifier(alpha=1.0 / C, class_weight="balanced")
                else:
                    from sklearn.svm import LinearSVC

                    model = LinearSVC(C=C, class_weight="balanced", dual="auto",
                                      max_iter=5000, random_state=seed)
                model.fit(Xs, t)
                out.append(np.asarray(model.coef_, np.float64).reshape(-1) / scale)
        return np.array(out)

    @staticmethod
    def _separability(scores, T, codes, rows, signs=None, symmetric=False):
        """ROC AUC of each row's score for its label, within class.

        A pooled row: the mean over the classes in which both labels occur (with
        each class's sign for the annotation-free direction); a per-class row
        (``pooling="span"``): within its class.
        """
        out = np.full(len(rows), np.nan)
        for r, (j, c) in enumerate(rows):
            present = np.unique(codes) if c is None else [c]
            aucs = []
            for cc in present:
                m = codes == cc
                sign = 1.0 if signs is None or c is not None else signs[cc]
                if sign != 0 and m.any():
                    a = _auc(T[m, j], sign * scores[m, r])
                    aucs.append(max(a, 1 - a) if symmetric else a)
            aucs = [a for a in aucs if not np.isnan(a)]
            if aucs:
                out[r] = np.mean(aucs)
            elif c is None:  # constant within every class (confounded): overall
                out[r] = _auc(T[:, j], scores[:, r])
        return out

    def _reference(self, X, D, ref_mask):
        U = self.directions_
        k = U.shape[0]
        ref = self.reference
        if k == 0:
            r = np.zeros(0)
        elif isinstance(ref, str):
            if ref == "zero":
                r = np.zeros(k)
            elif ref == "mean":
                r = X.mean(axis=0, dtype=np.float64) @ U.T
            else:  # "absent": mean projection of samples without each concept
                scores = (X @ D.T.astype(X.dtype)).astype(np.float64)
                n_ref = ref_mask.sum(axis=0)
                if np.any(n_ref == 0):
                    raise ValueError(
                        "SpuriousProbe: reference='absent' needs samples without the "
                        "concept; every sample has it. Use reference='mean' or 'zero'."
                    )
                p = np.where(ref_mask, scores, 0).sum(axis=0) / n_ref
                r = np.linalg.lstsq(D @ U.T, p, rcond=None)[0]
        else:
            r = np.asarray(ref, dtype=np.float64).reshape(-1)
            if r.size == 1:
                r = np.full(k, r[0])
            if r.shape != (k,):
                raise ValueError(
                    f"SpuriousProbe: reference has {r.size} values but there are {k} "
                    "directions."
                )
        return r.astype(X.dtype)

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Remove the concept directions: ``z - strength * (z V^T - r) V``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            Embeddings with their component along every direction moved
            ``strength`` of the way to the reference; same dtype as ``X``.
        """
        check_is_fitted(self)
        X = host_array(X)
        _check_X_form(X, "SpuriousProbe")
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        U = self.directions_.astype(X.dtype, copy=False)
        offset = X @ U.T
        offset -= self.reference_.astype(X.dtype, copy=False)
        offset *= X.dtype.type(self.strength)
        return X - offset @ U

    def fit_transform(self, X, y=None, *, spurious=None):
        """Fit, then remove the concept directions from ``X``.

        Implemented here (not inherited) so that ``spurious``, routed to it by a
        Pipeline, reaches :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,), default=None
            Class labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), default=None
            Spurious attribute.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
        """
        return self.fit(X, y, spurious=spurious).transform(X)

    def _pullback(self, w, b):
        """``(w', b')`` with ``transform(x) @ w.T + b == x @ w'.T + b'``."""
        check_is_fitted(self)
        U = self.directions_.astype(np.float64)
        wu = self.strength * (np.asarray(w, np.float64) @ U.T)
        return w - wu @ U, b + wu @ self.reference_.astype(np.float64)

    # ---------------------------------------------------------- diagnostics
    def concept_scores(self, X):
        """Projection of every embedding on every concept direction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_concepts)
            ``X @ concept_directions_.T``, larger towards the concept.
        """
        check_is_fitted(self)
        X = host_array(X)
        _check_X_form(X, "SpuriousProbe")
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return X @ self.concept_directions_.T.astype(X.dtype, copy=False)

    def separability(self, X, spurious, y=None):
        """ROC AUC of the concept scores for the attribute on new data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
            Spurious attribute, with the values the probe was fitted on.
        y : array-like of shape (n_samples,), default=None
            Class labels: the AUC is then computed within each class (where both
            labels occur) and averaged, which keeps the class signal out of it.

        Returns
        -------
        auc : ndarray of shape (n_concepts,)
            Per concept; 0.5 means the scores do not separate the attribute. For
            the annotation-free direction, whose orientation is arbitrary, each
            class's AUC is for the attribute's larger value and is reported as
            ``max(auc, 1 - auc)``.
        """
        scores = self.concept_scores(X)
        n = scores.shape[0]
        s = check_spurious(spurious, n, who="SpuriousProbe.separability")
        if y is None:
            codes, classes = np.zeros(n, dtype=np.intp), None
        else:
            classes, codes = np.unique(np.asarray(y), return_inverse=True)
            codes = codes.ravel()
        rows = []
        for j, c in self._rows:
            if c is None or classes is None:
                rows.append((j, None))
            else:  # a per-class row: that class's index in this y (-1 if absent)
                hit = np.flatnonzero(classes == self._classes[c])
                rows.append((j, int(hit[0]) if hit.size else -1))
        if self.annotation_free_:
            if s.ndim != 1 or len(np.unique(s)) != 2:
                raise ValueError(
                    "SpuriousProbe.separability: for the annotation-free direction "
                    "pass a binary attribute."
                )
            T = np.repeat((s == np.unique(s)[1])[:, None], len(self._concept_ids), 1)
            return self._separability(scores, T, codes, rows, symmetric=True)
        T = np.stack([self._concept_column(s, name) for name in self._concept_ids],
                     axis=1)
        return self._separability(scores, T, codes, rows)

    def _concept_column(self, s, name):
        """Boolean label of the concept ``name`` (an entry of ``concepts_``)."""
        if s.ndim == 1:
            return s == name
        column, value = name
        if column >= s.shape[1]:
            raise ValueError(
                f"SpuriousProbe: the probe was fitted on {column + 1}+ attribute "
                f"columns; spurious has {s.shape[1]}."
            )
        return s[:, column] == value

    def head_sensitivity(self, head=None):
        """How much each class logit moves along each concept direction: ``W v``.

        For a linear head this is the TCAV sensitivity (the directional
        derivative of every class logit along the concept), and the quantity
        that RR-ClArC drives to zero.

        Parameters
        ----------
        head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
            The head to examine; the probe's ``head`` by default.

        Returns
        -------
        sensitivity : ndarray of shape (n_classes, n_concepts)
            Row ``c``: ``W_c . v`` for every concept direction ``v`` (one row per
            class, also for two classes).
        """
        check_is_fitted(self)
        head = self.head if head is None else head
        if head is None:
            raise ValueError(
                "SpuriousProbe.head_sensitivity: pass a head (or set `head=`)."
            )
        linear = resolve_head(head, who="SpuriousProbe.head_sensitivity")
        if linear.n_features != self.n_features_in_:
            raise ValueError(
                f"SpuriousProbe.head_sensitivity: the head takes {linear.n_features} "
                f"features, the probe {self.n_features_in_}."
            )
        W, _ = linear.full()
        return np.asarray(W, np.float64) @ self.concept_directions_.T.astype(np.float64)

    def plot_concept_scores(self, X, y, spurious, *, concept=0, ax=None):
        """Histogram of the concept scores of every group (needs matplotlib).

        A shortcut for
        :meth:`sklearn_spur.plotting.ConceptScoreDisplay.from_estimator`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,)
            Attribute values; groups are (class, value) pairs.
        concept : int, default=0
            Which concept direction (index into :attr:`concepts_`).
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure by default.

        Returns
        -------
        display : sklearn_spur.plotting.ConceptScoreDisplay
            With ``ax_`` and ``figure_``.
        """
        from ..plotting import ConceptScoreDisplay

        check_is_fitted(self)
        display = ConceptScoreDisplay.from_estimator(
            self, X, y, spurious=spurious, direction=concept, ax=ax)
        display.ax_.set_xlabel(f"concept score ({self.concepts_[concept]!r} direction)")
        return display

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
