"""The original head's evidence on a data set: its probabilities, mistakes, confidence.

JTT, AFR, NeuronTune, the annotation-free probe direction and the editor's
inferred sub-classes all start from the same few numbers about the deployed
head on the data at hand. They are computed here, once, in one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HeadEvidence", "head_evidence"]


@dataclass(frozen=True)
class HeadEvidence:
    """What a head says about every sample of a data set.

    Attributes
    ----------
    pred : ndarray of shape (n_samples,) of int
        Predicted class index (into the head's sorted classes).
    proba_true : ndarray of shape (n_samples,)
        Probability the head gives the true class.
    confidence : ndarray of shape (n_samples,)
        Probability of the predicted class.
    wrong : ndarray of shape (n_samples,) of bool
        Whether the head misclassifies the sample.
    """

    pred: np.ndarray
    proba_true: np.ndarray
    confidence: np.ndarray
    wrong: np.ndarray


def head_evidence(head, X, y_idx) -> HeadEvidence:
    """Evidence of a :class:`~sklearn_spur._core.heads.LinearHead` on ``(X, y_idx)``.

    Parameters
    ----------
    head : LinearHead
        The head, its classes sorted.
    X : ndarray of shape (n_samples, n_features)
        Embeddings.
    y_idx : ndarray of shape (n_samples,) of int
        True class index of every sample, into ``head.classes``.

    Returns
    -------
    evidence : HeadEvidence
    """
    proba = head.predict_proba(X)
    pred = proba.argmax(axis=1)
    y_idx = np.asarray(y_idx)
    return HeadEvidence(
        pred=pred,
        proba_true=proba[np.arange(len(y_idx)), y_idx],
        confidence=proba.max(axis=1),
        wrong=pred != y_idx,
    )
