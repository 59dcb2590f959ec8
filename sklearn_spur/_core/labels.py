"""Validation of label arrays: true classes, predictions and attribute values.

One function, :func:`as_labels`, decides what counts as a set of labels, so the
metrics, the scorers and :func:`~sklearn_spur._core.groups.check_spurious` refuse
the same things with the same words:

- missing values (``NaN``, ``None``, ``pandas.NA``, ``NaT``): a missing label is
  not a class or a group of its own;
- a mix of types (strings and numbers, bytes and strings);
- complex numbers;
- floats that are not whole numbers (``0.37``, ``rng.normal(size=n)``): they are
  continuous values (scores, probabilities, measurements), not labels. Whole
  floats (``0.0``, ``1.0``) are fine; cast codes such as ``0.5`` to ``str``.

Only the unique values are inspected, so object arrays cost one ``np.unique``.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

__all__ = ["as_labels", "check_same_kind", "label_kind", "missing_mask",
           "user_stacklevel"]

_INTERNAL = ("sklearn_spur.", "sklearn.utils._param_validation")


def user_stacklevel() -> int:
    """``stacklevel`` for a warning from the caller that points at the user's code.

    Counts the frames of this package (and scikit-learn's parameter validation
    wrapper) between the function that warns and the first outside frame.
    """
    frame, level = sys._getframe(1), 1
    while (frame is not None
           and frame.f_globals.get("__name__", "").startswith(_INTERNAL)):
        frame, level = frame.f_back, level + 1
    return level


def missing_mask(a: np.ndarray) -> np.ndarray:
    """Boolean mask of missing values (NaN, None, pandas NA, NaT) in ``a``."""
    kind = a.dtype.kind
    if kind in "fc":
        return np.isnan(a)
    if kind in "mM":
        return np.isnat(a)
    if kind != "O":
        return np.zeros(a.shape, dtype=bool)
    pd = sys.modules.get("pandas")  # pandas values can only come from pandas
    if pd is not None:
        return np.asarray(pd.isna(a), dtype=bool)
    return np.asarray(np.equal(a, None) | np.not_equal(a, a), dtype=bool)


def _value_kind(v) -> str:
    if isinstance(v, (str, np.str_)):
        return "str"
    if isinstance(v, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(v, (bool, np.bool_)):
        return "number"  # True == 1: booleans compare with integers correctly
    if isinstance(v, numbers.Complex) and not isinstance(v, numbers.Real):
        return "complex"
    if isinstance(v, numbers.Number):
        return "number"
    return type(v).__name__


_DTYPE_KIND = {"b": "number", "i": "number", "u": "number", "f": "number",
               "U": "str", "S": "bytes", "c": "complex", "M": "datetime",
               "m": "timedelta"}


def label_kind(values: np.ndarray) -> str:
    """``"number"``, ``"str"``, ``"bytes"`` or a type name, for unique values."""
    if values.dtype.kind != "O":
        return _DTYPE_KIND.get(values.dtype.kind, values.dtype.name)
    kinds = {_value_kind(v) for v in values.ravel().tolist()}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _mixed_error(a, name):
    kinds = sorted({type(v).__name__ for v in a.ravel()[:1000].tolist()})
    return ValueError(
        f"`{name}` mixes label types ({', '.join(kinds)}); use one type, e.g. all "
        "strings or all integers."
    )


def as_labels(labels, name: str, *, hint: str = ""):
    """Validate a label array; return it with its sorted unique values and kind.

    Parameters
    ----------
    labels : array-like
        Class labels, predicted labels or attribute values (any shape).
    name : str
        Argument name used in error messages.
    hint : str, default=""
        Appended to the message for continuous values (the fix for this argument).

    Returns
    -------
    labels : ndarray
    values : ndarray
        Sorted unique values.
    kind : str
        ``"number"``, ``"str"``, ``"bytes"`` or a type name.
    """
    a = np.asarray(labels)
    if a.dtype.kind == "c":
        raise ValueError(f"`{name}` must hold discrete labels, got complex values.")
    if a.dtype.kind == "V" or (a.dtype.kind == "O" and a.size and
                               isinstance(a.flat[0], (list, tuple, dict, set))):
        raise ValueError(f"`{name}` must hold one label per sample, got nested values.")
    missing = missing_mask(a)
    if missing.any():
        first = np.argwhere(missing)[0].tolist()
        raise ValueError(
            f"`{name}` contains NaN or None (missing values) at {int(missing.sum())} "
            f"position(s), the first at index {first[0] if len(first) == 1 else first}."
            " A missing label is not a class or group of its own: drop those samples, "
            "or give them an explicit label such as \"unknown\"."
        )
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` contains infinity; labels must be finite.")
    try:
        values = np.unique(a)
    except TypeError:
        raise _mixed_error(a, name) from None
    kind = label_kind(values)
    if kind == "mixed":
        raise _mixed_error(a, name)
    if kind == "complex":
        raise ValueError(f"`{name}` must hold discrete labels, got complex values.")
    if kind == "number" and values.size:
        try:
            as_float = values.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            as_float = None
        if as_float is not None:
            if not np.all(np.isfinite(as_float)):
                raise ValueError(f"`{name}` contains infinity; labels must be finite.")
            fractional = as_float[as_float != np.round(as_float)]
            if fractional.size:
                raise ValueError(
                    f"`{name}` holds floats that are not whole numbers (e.g. "
                    f"{fractional[0]:.6g}; {values.size} distinct values): it looks "
                    "continuous, not a set of labels. Floats are read as labels only "
                    "when whole (0.0, 1.0, ...); cast codes such as 0.5 to str."
                    + (f" {hint}" if hint else "")
                )
    return a, values, kind


def check_same_kind(kind_true: str, kind_pred: str, name_true: str = "y_true",
                    name_pred: str = "y_pred"):
    """Refuse labels that can never compare equal (e.g. ints against strings)."""
    if kind_true != kind_pred:
        words = {"number": "numeric", "str": "string"}
        raise ValueError(
            f"`{name_true}` holds {words.get(kind_true, kind_true)} labels but "
            f"`{name_pred}` holds {words.get(kind_pred, kind_pred)} labels, so no "
            "prediction can ever match (every accuracy would be 0). Use the same "
            "label type for both, e.g. "
            f"`{name_pred}.astype({name_true}.dtype)` or map the predicted indices "
            "through `estimator.classes_`."
        )
