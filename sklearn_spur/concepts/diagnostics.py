"""Diagnostics of concept directions: separability, head sensitivity, names.

Plain functions of arrays behind :meth:`SpuriousProbe.separability`,
:attr:`SpuriousProbe.separability_` and :meth:`SpuriousProbe.head_sensitivity`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from .._core.groups import check_spurious, host_array
from .._core.heads import resolve_head

__all__ = [
    "ProbeDiagnosticsMixin",
    "auc",
    "describe_concept",
    "head_sensitivity",
    "separability",
    "separability_on",
]


def auc(t, score):
    """ROC AUC of ``score`` for the boolean ``t``; NaN when ``t`` is constant."""
    if t.all() or not t.any():
        return np.nan
    return float(roc_auc_score(t, score))


def separability(scores, T, codes, rows, signs=None, symmetric=False):
    """ROC AUC of each row's score for its label, within class.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_rows)
        Concept scores.
    T : ndarray of bool, shape (n_samples, n_concepts)
        Concept labels.
    codes : ndarray of int, shape (n_samples,)
        Class index of every sample.
    rows : list of (concept, class or None)
        What each score column measures. A pooled row (class None): the mean
        AUC over the classes in which both labels occur (each class with its
        sign in ``signs``, for the annotation-free direction); a per-class row
        (``pooling="span"``): the AUC within its class.
    signs : ndarray of shape (n_classes,), default=None
        Orientation of every class's label along the pooled direction.
    symmetric : bool, default=False
        Report ``max(auc, 1 - auc)`` per class (for an arbitrary orientation).

    Returns
    -------
    auc : ndarray of shape (n_rows,)
    """
    out = np.full(len(rows), np.nan)
    for r, (j, c) in enumerate(rows):
        present = np.unique(codes) if c is None else [c]
        aucs = []
        for cc in present:
            m = codes == cc
            sign = 1.0 if signs is None or c is not None else signs[cc]
            if sign != 0 and m.any():
                a = auc(T[m, j], sign * scores[m, r])
                aucs.append(max(a, 1 - a) if symmetric else a)
        aucs = [a for a in aucs if not np.isnan(a)]
        if aucs:
            out[r] = np.mean(aucs)
        elif c is None:  # constant within every class (confounded): overall
            out[r] = auc(T[:, j], scores[:, r])
    return out


def concept_column(s, name):
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


def separability_on(scores, s, y, rows, concept_ids, fit_classes, *,
                    annotation_free):
    """:func:`separability` of a fitted probe's scores on new data.

    ``rows``, ``concept_ids`` and ``fit_classes`` are the probe's bookkeeping
    of what each direction measures; ``s`` is the checked attribute.
    """
    n = scores.shape[0]
    if y is None:
        codes, classes = np.zeros(n, dtype=np.intp), None
    else:
        classes, codes = np.unique(np.asarray(y), return_inverse=True)
        codes = codes.ravel()
    here = []
    for j, c in rows:
        if c is None or classes is None:
            here.append((j, None))
        else:  # a per-class row: that class's index in this y (-1 if absent)
            hit = np.flatnonzero(classes == fit_classes[c])
            here.append((j, int(hit[0]) if hit.size else -1))
    if annotation_free:
        if s.ndim != 1 or len(np.unique(s)) != 2:
            raise ValueError(
                "SpuriousProbe.separability: for the annotation-free direction "
                "pass a binary attribute."
            )
        T = np.repeat((s == np.unique(s)[1])[:, None], len(concept_ids), 1)
        return separability(scores, T, codes, here, symmetric=True)
    T = np.stack([concept_column(s, name) for name in concept_ids], axis=1)
    constant = [name for name, t in zip(concept_ids, T.T, strict=True)
                if t.all() or not t.any()]
    if constant and len(constant) == len(concept_ids):
        raise ValueError(
            f"SpuriousProbe.separability: none of the concepts {concept_ids[:5]} "
            "both occurs and is absent in `spurious` (its values: "
            f"{np.unique(s).tolist()[:10]}); pass the attribute with the values the "
            "probe was fitted on."
        )
    if constant:
        warnings.warn(
            f"SpuriousProbe.separability: the concept(s) {constant[:5]} are present "
            "in every sample or in none of these data; their AUC is NaN.",
            UserWarning, stacklevel=3,
        )
    return separability(scores, T, codes, here)


def head_sensitivity(head, directions, n_features):
    """``W v`` for every class row ``W_c`` of ``head`` and every direction ``v``.

    Returns an array of shape (n_classes, n_directions), one row per class
    (also for a binary head).
    """
    who = "SpuriousProbe.head_sensitivity"
    linear = resolve_head(head, who=who)
    if linear.n_features != n_features:
        raise ValueError(
            f"{who}: the head takes {linear.n_features} features, the probe "
            f"{n_features}."
        )
    W, _ = linear.full()
    return np.asarray(W, np.float64) @ np.asarray(directions, np.float64).T


def describe_concept(name, cls=None):
    """A short label for a concept (an attribute value, ``(column, value)`` or
    ``"mistake"``), within the class ``cls`` if given (for plots).

    >>> describe_concept(1), describe_concept((0, "red")), describe_concept("mistake")
    ('s=1', 's[:, 0]=red', "the head's mistakes")
    >>> describe_concept(1, cls="cat")
    's=1 in class cat'
    """
    if isinstance(name, str) and name == "mistake":
        text = "the head's mistakes"
    elif isinstance(name, tuple):
        text = f"s[:, {name[0]}]={name[1]}"
    else:
        text = f"s={name}"
    return text if cls is None else f"{text} in class {cls}"


class ProbeDiagnosticsMixin:
    """The diagnostic methods of :class:`~sklearn_spur.SpuriousProbe`.

    They read the fitted probe: ``concept_directions_``, its bookkeeping of
    what each direction measures (``_rows``, ``_concept_ids``, ``_classes``)
    and its input check ``_check_X``.
    """

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
        X, _ = self._check_X(X, reset=False)
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
        s = check_spurious(spurious, scores.shape[0],
                           who="SpuriousProbe.separability")
        return separability_on(
            scores, s, host_array(y), self._rows, self._concept_ids, self._classes,
            annotation_free=self.annotation_free_)

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
        return head_sensitivity(head, self.concept_directions_,
                                            self.n_features_in_)

    def concept_label(self, index):
        """A short description of concept ``index`` (for plot labels).

        Parameters
        ----------
        index : int
            Index into :attr:`concepts_`.

        Returns
        -------
        label : str
            Such as ``"s=1"``, ``"s[:, 0]=red"``, ``"s=1 in class 0"`` or
            ``"the head's mistakes"``.
        """
        check_is_fitted(self)
        j, c = self._rows[index]
        cls = None if c is None else self._classes[c]
        cls = cls.item() if hasattr(cls, "item") else cls
        return describe_concept(self._concept_ids[j], cls)

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
        return ConceptScoreDisplay.from_estimator(
            self, X, y, spurious=spurious, direction=concept, ax=ax)
