"""The head's evidence on a data set: what it predicts, how sure, where it errs.

One function, :func:`head_evidence`, for every method that looks at the trained
head's mistakes or confidence: the annotation-free probe direction (the
head's mistakes), error-based reweighting (JTT, AFR: the probability of the
true class), NeuronTune's misclassified samples, the editor's diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from .heads import LinearHead

__all__ = ["HeadEvidence", "head_class_index", "head_evidence"]


@dataclass(frozen=True)
class HeadEvidence:
    """What a linear head says about every sample.

    Attributes
    ----------
    proba_true : ndarray of shape (n_samples,)
        Probability the head gives the true class.
    wrong : ndarray of shape (n_samples,), dtype bool
        Whether the head's prediction is not the true class.
    confidence : ndarray of shape (n_samples,)
        Probability of the predicted class (the largest probability).
    pred : ndarray of shape (n_samples,), dtype intp
        Index of the predicted class in the head's ``classes``.
    """

    proba_true: np.ndarray
    wrong: np.ndarray
    confidence: np.ndarray
    pred: np.ndarray


def head_class_index(head: LinearHead, y, *, who="head") -> np.ndarray:
    """Index of every label of ``y`` in ``head.classes`` (any order of classes).

    Raises a ValueError naming the labels the head has no output for.
    """
    y = np.asarray(y)
    head.check_classes(y, who=who)
    order = np.argsort(head.classes, kind="stable")
    return order[np.searchsorted(head.classes[order], y)].astype(np.intp)


def head_evidence(head: LinearHead, X, y_idx) -> HeadEvidence:
    """The head's probabilities, predictions and mistakes on ``X``.

    Parameters
    ----------
    head : LinearHead
        The head, as resolved by :func:`sklearn_spur._core.heads.resolve_head`.
    X : ndarray of shape (n_samples, n_features)
        Embeddings the head reads.
    y_idx : array-like of int of shape (n_samples,)
        True class of every sample, as an index into ``head.classes`` (see
        :func:`head_class_index`).

    Returns
    -------
    evidence : HeadEvidence
        Probabilities in X's floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur._core.heads import LinearHead
    >>> from sklearn_spur._core.evidence import head_evidence
    >>> head = LinearHead(np.array([[1.0]]), np.array([0.0]), np.array([0, 1]))
    >>> ev = head_evidence(head, np.array([[-2.0], [3.0], [-1.0]]), [0, 1, 1])
    >>> ev.wrong.tolist(), ev.pred.tolist()
    ([False, False, True], [0, 1, 0])
    >>> np.round(ev.proba_true, 2).tolist()
    [0.88, 0.95, 0.27]
    """
    y_idx = np.asarray(y_idx)
    n_classes = len(head.classes)
    if y_idx.shape != (X.shape[0],) or y_idx.dtype.kind not in "iu":
        raise ValueError(
            f"head_evidence: y_idx must be {X.shape[0]} integer class indices (one "
            f"per row of X); got shape {y_idx.shape}, dtype {y_idx.dtype}. Map labels "
            "with head_class_index(head, y)."
        )
    if y_idx.size and (y_idx.min() < 0 or y_idx.max() >= n_classes):
        raise ValueError(
            f"head_evidence: y_idx holds indices outside 0..{n_classes - 1} (the "
            f"head has {n_classes} classes)."
        )
    # One product: the argmax of the logits is exactly head.predict (ties and
    # probabilities that round to 1/2 included); their softmax is predict_proba.
    logits = head.logits(X)
    pred = logits.argmax(axis=1).astype(np.intp)
    proba = softmax(logits, axis=1)
    rows = np.arange(X.shape[0])
    return HeadEvidence(proba_true=proba[rows, y_idx], wrong=pred != y_idx,
                        confidence=proba[rows, pred], pred=pred)
