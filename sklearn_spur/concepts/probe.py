"""SpuriousProbe: concept directions of the spurious attribute, and their removal.

The estimator only: the direction estimators live in
:mod:`sklearn_spur.concepts.directions`, the diagnostics (separability, head
sensitivity) in :mod:`sklearn_spur.concepts.diagnostics`.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._core.groups import missing_spurious_message
from .._core.heads import resolve_head
from .._core.persist import decode_state, encode_state
from ..exceptions import MissingSpuriousError
from . import diagnostics
from ._validation import check_embeddings, validate_fit_inputs
from .diagnostics import ProbeDiagnosticsMixin
from .directions import (
    DIRECTIONS,
    PROBE_CS,
    cell_directions,
    class_codes,
    concept_cells,
    concept_labels,
    mistake_labels,
    mode,
    orthonormalize,
    pool_directions,
    reference_candidates,
    resolve_reference,
)

__all__ = ["SpuriousProbe"]


class SpuriousProbe(ProbeDiagnosticsMixin, OneToOneFeatureMixin, TransformerMixin,
                    BaseEstimator):
    """Concept directions of the spurious attribute, with their diagnostics and removal.

    ``fit`` learns unit directions of embedding space that encode the spurious
    attribute; ``transform`` removes them (P-ClArC projection)::

        z' = z - strength * (z . v - r) v

    with ``r`` a reference projection, for every direction ``v`` (several
    directions are orthonormalised first, then removed together).

    Directions (``direction=``): ``"pattern"`` (default) is the "signal" CAV
    ``mean(z | t=1) - mean(z | t=0)`` of Pahde et al., which follows the
    concept; ``"svm"``, ``"logistic"``, ``"ridge"`` and ``"lasso"`` take the
    weight vector of a ``t``-balanced linear model, ``C`` chosen from ``Cs`` by
    ``cv``-fold ROC AUC, which also follows the noise of the embeddings. The
    concept labels ``t`` come from ``spurious``: one direction per binary
    attribute (the larger value), one per value (one versus rest) for more
    values, and those of every column of a 2-D attribute, all orthonormalised
    into :attr:`directions_`. With ``y`` they are estimated within each class
    and pooled (weights ``n_c p_c (1 - p_c)``), so that they do not absorb the
    class signal.

    Annotation-free mode: without ``spurious`` but with ``head=`` and ``y``, the
    concept is "the head gets this sample wrong", within each class, the
    per-class directions sign-aligned. Fit it on held-out data; it also carries
    class signal and is meant for the binary, one-shortcut case: check
    :attr:`separability_` and a held-out worst-class accuracy before relying on
    it. The estimators, the pooling and when each helps are described in the
    user guide (``docs/guide/probe.rst``); the functions behind them are in
    :mod:`sklearn_spur.concepts.directions`.

    ``strength`` and ``reference`` act at transform time and may be changed
    after ``fit``; the others take effect at the next ``fit``. Every value is
    checked where it acts, so a bad one set after ``fit`` is refused by
    :meth:`transform`.

    Parameters
    ----------
    direction : {"pattern", "svm", "logistic", "ridge", "lasso"}, default="pattern"
        How each concept direction is estimated (see above).
    within_class : bool, default=True
        Estimate directions within each class of ``y`` and pool them. Ignored
        when ``y`` is not given.
    pooling : {"mean", "span"}, default="mean"
        How the per-class directions of a concept are combined: ``"mean"``,
        their weighted mean (one per concept); ``"span"``, every class's own
        direction (``(concept, class)`` in :attr:`concepts_`), which also
        removes the class-specific parts that ``"mean"`` leaves readable.
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
        Read at transform time (a strength curve needs one fit).
    reference : {"absent", "mean", "zero"}, float or array-like, default="absent"
        The projection ``r`` that :meth:`transform` moves samples towards.
        ``"absent"``: the mean projection of the fit samples without the concept
        (the correctly classified ones in the annotation-free mode; least
        squares over several directions). ``"mean"``: that of all fit samples.
        ``"zero"``: ``r = 0``, a linear projection. A finite float or array of
        shape ``(n_directions,)``: ``r`` in the coordinates of
        :attr:`directions_`. Read at transform time.
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
        The projection ``r`` on each row of :attr:`directions_`, for the
        current ``reference``.
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

    __metadata_request__fit: ClassVar[dict] = {"spurious": True}
    _label_free = False  # needs `spurious`, or `head=` for the annotation-free mode

    _parameter_constraints: ClassVar[dict] = {
        "direction": [StrOptions(set(DIRECTIONS))],
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
    def _check_X(self, X, *, reset, y=None):
        return check_embeddings(self, X, reset=reset, y=y)

    def __getstate__(self):
        # a torch `head=` is stored as arrays (skops-safe, no pickle inside)
        return encode_state(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(decode_state(state))

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
        X, y, s = validate_fit_inputs(self, X, y, spurious)
        codes, classes = class_codes(y, X.shape[0], self.within_class)
        self.annotation_free_ = s is None
        if s is not None:
            T, names = concept_labels(s, self.concept)
        elif self.head is None:
            raise MissingSpuriousError(
                missing_spurious_message("SpuriousProbe")
                + " Without attribute labels, pass `head=` (the trained last "
                "layer) and y to learn the direction of the head's mistakes."
            )
        elif y is None:
            raise ValueError(
                "SpuriousProbe: the annotation-free mode (no `spurious`, a "
                "`head`) needs the class labels y to find the head's mistakes."
            )
        else:
            head = resolve_head(self.head, X, y, who="SpuriousProbe")
            T, names = mistake_labels(head, X, y), ["mistake"]
            codes, classes = class_codes(y, X.shape[0], True)
        cells = concept_cells(T, codes, len(classes), names,
                              annotation_free=self.annotation_free_)
        if self.annotation_free_ and not cells:
            raise ValueError(
                "SpuriousProbe: the head makes no mistake (or no correct prediction) "
                "within any class of these data, so there is no mistake direction. "
                "Fit on held-out data, not on the data the head was trained on."
            )
        units, weights, Cs = cell_directions(
            X, T, codes, cells, direction="pattern" if self.annotation_free_
            else self.direction, Cs=self.Cs, cv=self.cv, random_state=self.random_state)
        rows, self.mistake_signs_ = pool_directions(
            units, weights, cells, classes, names, pooling=self.pooling,
            annotation_free=self.annotation_free_)
        D = np.array([d for d, _, _ in rows]).reshape(-1, X.shape[1])
        self.concepts_ = [name for _, name, _ in rows]
        # Private bookkeeping for separability(): the concept (index into
        # _concept_ids) and class (index into _classes, None if pooled) of each row.
        self._rows = [(j, c) for _, _, (j, c) in rows]
        self._concept_ids, self._classes = names, classes
        self.C_ = None
        if Cs is not None and D.shape[0]:
            # per row: the C chosen most often over the cells of its concept
            self.C_ = np.array([
                mode([C for (j, _), C in zip(cells, Cs, strict=True) if j == row])
                for row, _ in self._rows])
        self.separability_ = diagnostics.separability(
            X @ D.T.astype(X.dtype), T, codes, self._rows, self.mistake_signs_)
        self.concept_directions_ = D.astype(X.dtype)
        self.directions_ = orthonormalize(D).astype(X.dtype)
        self._references = reference_candidates(
            X, D, self.directions_.astype(np.float64),
            ~T[:, [j for j, _ in self._rows]])
        self.reference_  # noqa: B018 -- an invalid or impossible reference fails here
        return self

    @property
    def reference_(self):
        check_is_fitted(self, "directions_")
        r = resolve_reference(self.reference, self._references,
                              self.directions_.shape[0])
        return r.astype(self.directions_.dtype)

    # ------------------------------------------------------------ transform
    def _transform_params(self):
        """``(strength, reference_)`` as they are now, checked: they act here.

        ``set_params`` does not validate, so a value set after ``fit`` is
        checked where it is used, with the same constraints as in ``fit``.
        """
        check_is_fitted(self)
        self._validate_params()
        return self.strength, self.reference_

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
            ``strength`` of the way to the reference; same dtype as ``X``
            (float16 gives float32).
        """
        strength, reference = self._transform_params()
        X, _ = self._check_X(X, reset=False)
        U = self.directions_.astype(X.dtype, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            offset = X @ U.T
            offset -= reference.astype(X.dtype, copy=False)
            offset *= X.dtype.type(strength)
            out = X - offset @ U
        if not np.isfinite(out).all():
            raise ValueError(
                f"SpuriousProbe.transform: the projection overflows {X.dtype} (X "
                f"holds values up to {np.abs(X).max():.3g}). Rescale X, or pass it as "
                "float64."
            )
        return out

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
        strength, reference = self._transform_params()
        U = self.directions_.astype(np.float64)
        wu = strength * (np.asarray(w, np.float64) @ U.T)
        return w - wu @ U, b + wu @ reference.astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
