"""Input checks of :class:`~sklearn_spur.SpuriousProbe` (fit, transform, diagnostics)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._core.base import FLOAT_DTYPES, _check_X_form, _half_to_single
from .._core.groups import check_labels, check_spurious, host_array


def check_embeddings(estimator, X, *, reset, y=None):
    """``(X, y)`` validated: 2-D, finite, float64 or float32 (float16 -> float32)."""
    X = _half_to_single(host_array(X))
    _check_X_form(X, "SpuriousProbe")
    if y is None:
        return validate_data(estimator, X, dtype=FLOAT_DTYPES, reset=reset), None
    return validate_data(estimator, X, y, dtype=FLOAT_DTYPES, reset=reset)


def validate_fit_inputs(estimator, X, y, spurious):
    """``(X, y, s)`` for ``fit``: labels of one type, at least 2 samples."""
    y = host_array(y)
    if y is not None:
        check_labels(np.asarray(y), "y")
    X, y = check_embeddings(estimator, X, reset=True, y=y)
    if y is not None:
        check_classification_targets(y)
    if X.shape[0] < 2:
        raise ValueError(
            "SpuriousProbe needs at least 2 samples to estimate a direction; got "
            "1 sample."
        )
    s = check_spurious(spurious, X.shape[0], who="SpuriousProbe", required=False)
    return X, y, s
