"""A linear head in scikit-learn's conventions, and its validation.

:class:`LinearHead` holds ``coef``, ``intercept`` and ``classes``;
:func:`canonical_head` builds one from any row order and class order (classes
sorted, one logit row for two classes), refusing what cannot be a head.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import expit, softmax

from .groups import host_array

__all__ = ["LinearHead", "canonical_head"]


class LinearHead:
    """A linear classification head ``X @ coef.T + intercept`` with its classes.

    Parameters
    ----------
    coef : ndarray of shape (n_outputs, n_features)
        One row per class, or a single row for two classes (scikit-learn's
        binary convention: the logit of ``classes[1]``).
    intercept : ndarray of shape (n_outputs,)
        Bias per output.
    classes : ndarray of shape (n_classes,)
        Class label of each output (of ``[negative, positive]`` for one row).
    full : tuple of ndarray, default=None
        The per-class rows ``(W, b)`` that a single binary row was collapsed
        from (see :func:`resolve_head`); :meth:`full` returns them.
    """

    def __init__(self, coef, intercept, classes, *, full=None):
        self.coef = np.atleast_2d(coef)
        self.intercept = np.asarray(intercept).reshape(-1)
        self.classes = np.asarray(classes)
        self._full = full
        if self.coef.ndim != 2 or 0 in self.coef.shape:
            raise ValueError(
                "head: the weight must be a non-empty 2-D array (n_outputs, "
                f"n_features); got shape {self.coef.shape}."
            )
        k = self.coef.shape[0]
        if self.intercept.shape[0] != k:
            raise ValueError(
                f"head: weight has {k} outputs but bias has {self.intercept.shape[0]}."
            )
        expected = 2 if k == 1 else k
        if self.classes.ndim != 1 or len(self.classes) != expected:
            raise ValueError(
                f"head: {k} output(s) need {expected} classes, got "
                f"{self.classes.size} (shape {self.classes.shape})."
            )

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def astype(self, dtype) -> LinearHead:
        full = None if self._full is None else tuple(
            a.astype(dtype, copy=False) for a in self._full)
        return LinearHead(self.coef.astype(dtype, copy=False),
                          self.intercept.astype(dtype, copy=False), self.classes,
                          full=full)

    def full(self):
        """``(W, b)`` with one row per class, in ``classes`` order.

        A head given with two rows for two classes keeps them here, although
        ``coef`` holds their difference; a single binary row becomes
        ``(-w/2, w/2)``.
        """
        if self._full is not None:
            return self._full
        if self.coef.shape[0] == 1:
            half_w, half_b = self.coef / 2, self.intercept / 2
            return np.vstack([-half_w, half_w]), np.concatenate([-half_b, half_b])
        return self.coef, self.intercept

    def check_X(self, X, *, who="head"):
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"{who}: the head takes {self.n_features} features but X has "
                f"{X.shape[1]}. Pass the embeddings that the head was trained on."
            )

    def decision_function(self, X):
        """scikit-learn's convention: shape (n,) for two classes, else (n, C)."""
        self.check_X(X)
        scores = X @ self.coef.T.astype(X.dtype, copy=False)
        scores += self.intercept.astype(X.dtype, copy=False)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def logits(self, X):
        """One logit per class, shape (n, C)."""
        w, b = self.full()
        self.check_X(X)
        return X @ w.T.astype(X.dtype, copy=False) + b.astype(X.dtype, copy=False)

    def predict_proba(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.stack([1 - p, p], axis=1)
        return softmax(scores, axis=1)

    def predict(self, X):
        scores = self.decision_function(X)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes[idx]

    def class_index(self, y, *, who="head"):
        """Index in ``classes`` (sorted) of every label of ``y``; raise on unknown ones."""
        self.check_classes(y, who=who)
        return np.searchsorted(self.classes, y)

    def check_classes(self, y, *, who="head"):
        """Raise if ``y`` holds labels the head has no output for."""
        labels = np.unique(y)
        unknown = labels[~np.isin(labels, self.classes)]
        if unknown.size:
            kinds = {_label_kind(labels), _label_kind(self.classes)}
            hint = (" y and the head's classes are of different types (numbers vs "
                    "strings): use the same type for both." if len(kinds) > 1 else "")
            raise ValueError(
                f"{who}: y contains labels {unknown.tolist()[:5]} that the head has no "
                f"output for (head classes: {self.classes.tolist()[:10]}).{hint} A "
                "torch or (W, b) head's outputs are classes 0..C-1; pass "
                "`(W, b, classes)` to name them."
            )


def _label_kind(a) -> str:
    kind = np.asarray(a).dtype.kind
    if kind == "O" and len(a):
        kind = "U" if isinstance(np.asarray(a).flat[0], str) else "f"
    return "string" if kind in "USO" else "number"


def _to_numpy(a, *, who="head", name="weight"):
    if a is None:
        return None
    if getattr(getattr(a, "device", None), "type", None) == "meta":
        raise ValueError(
            f"{who}: the head's {name} is on the 'meta' device and holds no values; "
            "load the trained weights first (e.g. model.load_state_dict(...))."
        )
    if _is_uninitialized(a):
        raise ValueError(
            f"{who}: the head's {name} is not initialised (a lazy module); run one "
            "forward pass of the model first."
        )
    return np.asarray(host_array(a))


def _is_uninitialized(a) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(
        a, torch.nn.parameter.UninitializedParameter)


def _numeric(a, *, who, name):
    """``a`` as a float array: float16 -> float32, ints and bools -> float64."""
    a = _to_numpy(a, who=who, name=name)
    kind = a.dtype.kind
    if kind == "f":
        return a.astype(np.float32) if a.dtype.itemsize < 4 else a
    if kind in "iub":
        return a.astype(np.float64)
    raise TypeError(
        f"{who}: the head's {name} must hold real numbers; got dtype {a.dtype}."
    )


def canonical_head(coef, intercept, classes, *, who="head") -> LinearHead:
    """A :class:`LinearHead` in scikit-learn's conventions, whatever the input order.

    Rows are reordered so that ``classes`` are sorted (``np.unique`` order, that of
    a fitted ``classes_``); two rows for two classes become the single logit of
    ``classes[1]`` (``W[1] - W[0]``, ``b[1] - b[0]``), the rows being kept for
    :meth:`LinearHead.full`; a single row whose classes come unsorted changes
    sign. Duplicate, missing (NaN) or mixed-type labels are refused.
    """
    coef = np.atleast_2d(_numeric(coef, who=who, name="weight"))
    intercept = _numeric(intercept, who=who, name="bias").reshape(-1)
    if coef.ndim != 2:
        raise ValueError(
            f"{who}: the head's weight must be 2-D (n_outputs, n_features) or 1-D "
            f"(one binary logit); got shape {coef.shape}."
        )
    intercept = intercept.astype(coef.dtype, copy=False)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"{who}: the head's weights contain NaN or infinity.")
    classes = np.asarray(host_array(classes))
    head = LinearHead(coef, intercept, classes)  # checks the shapes
    try:
        order = np.argsort(classes, kind="stable")
        uniq = np.unique(classes)
    except TypeError:
        raise ValueError(
            f"{who}: the head's classes mix label types ({classes.tolist()[:10]}); "
            "use one type, e.g. all strings or all integers."
        ) from None
    if len(uniq) != len(classes) or (uniq.dtype.kind == "f" and np.isnan(uniq).any()):
        raise ValueError(
            f"{who}: the head's classes must be distinct labels, not NaN; got "
            f"{classes.tolist()[:10]}."
        )
    classes = classes[order]
    if coef.shape[0] == 1:
        sign = -1 if order[0] == 1 else 1
        return LinearHead(sign * coef, sign * intercept, classes)
    coef, intercept = coef[order], intercept[order]
    if coef.shape[0] == 2:
        return LinearHead(coef[1:] - coef[:1], intercept[1:] - intercept[:1], classes,
                          full=(coef, intercept))
    return head if (order == np.arange(len(order))).all() else LinearHead(
        coef, intercept, classes)
