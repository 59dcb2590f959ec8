"""NeuronTune's unit statistics and its label-free selection scores."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_array, metadata_routing

from .._core.base import FLOAT_DTYPES
from ..metrics import worst_class_accuracy

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
    return worst_class_accuracy(y, estimator.predict(X),
                                classes=getattr(estimator, "classes_", None))


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


def given_mask(units, aggregate, n_classes, d):
    """NeuronTuner's ``units=`` as a boolean mask (per class with ``"class"``)."""
    given = units
    units = np.asarray(units)
    shape = (n_classes, d) if aggregate == "class" else (d,)
    if units.dtype == bool:
        if units.shape != shape:
            raise ValueError(f"NeuronTuner: units as a boolean mask must have shape "
                             f"{shape}; got {units.shape}.")
        return units
    if units.ndim != 1 or not np.issubdtype(units.dtype, np.integer) or (
            units.size and (units.min() < -d or units.max() >= d)):
        raise ValueError(f"NeuronTuner: units must be unit indices in [0, {d}) or a "
                         f"boolean mask; got {given!r}.")
    mask = np.zeros(d, bool)
    mask[units] = True
    return np.broadcast_to(mask, shape).copy()
