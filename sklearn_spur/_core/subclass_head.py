"""A head with several outputs per class, pooled by log-sum-exp: the sub-class head.

Beside :class:`~sklearn_spur._core.heads.LinearHead` (one output per class),
:class:`SubclassHead` has one output per (class, sub-class); a class's score is
the log-sum-exp of its outputs' logits. Some outputs may be marked
*fictitious*: those whose bias an edit lowers
(:class:`~sklearn_spur.SingleWeightEditor`).
"""

from __future__ import annotations

import numpy as np

from .heads import LinearHead

__all__ = ["SubclassHead", "solver_rows"]


def solver_rows(coef, intercept):
    """Per-output rows in the solver's convention: two outputs become one logit row.

    The inverse of :meth:`LinearHead.full` (up to the shared offset, which the
    softmax ignores).
    """
    if coef.shape[0] == 2:
        return coef[1:] - coef[:1], intercept[1:] - intercept[:1]
    return coef, intercept


class SubclassHead:
    """Sub-class logits ``X @ coef.T + intercept``, pooled per class by log-sum-exp.

    Parameters
    ----------
    coef : ndarray of shape (n_outputs, n_features)
        One row per sub-class output, grouped by class (class-major).
    intercept : ndarray of shape (n_outputs,)
        Unedited bias of every output.
    output_class : ndarray of shape (n_outputs,) of int
        Index of each output's class, non-decreasing.
    fictitious : ndarray of shape (n_outputs,) of bool, default=None
        Outputs an edit may shift (none by default).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur._core.subclass_head import SubclassHead
    >>> head = SubclassHead(np.eye(3), np.zeros(3), np.array([0, 0, 1]),
    ...                     np.array([True, False, False]))
    >>> head.decision_function(np.array([[0., 0., 1.]])).round(3)
    array([0.307])
    >>> head.decision_function(np.array([[0., 0., 1.]]), shift=np.inf).round(3)
    array([1.])
    """

    def __init__(self, coef, intercept, output_class, fictitious=None):
        self.coef = coef
        self.intercept = intercept
        self.output_class = np.asarray(output_class)
        self.fictitious = (np.zeros(len(intercept), bool) if fictitious is None
                           else np.asarray(fictitious, bool))

    @classmethod
    def from_solver(cls, coef, intercept, output_class, fictitious=None):
        """From the solver's rows (a single logit row when there are two outputs)."""
        n_rows = max(coef.shape[0], 2)
        coef, intercept = LinearHead(coef, intercept, np.arange(n_rows)).full()
        return cls(coef, intercept, output_class, fictitious)

    @property
    def n_outputs(self) -> int:
        return self.coef.shape[0]

    def edited_intercept(self, shift=0.0):
        """Biases with ``shift`` subtracted from every fictitious output's.

        ``shift`` is a scalar or one value per output (used where fictitious).
        """
        b = self.intercept
        shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), b.shape)
        return np.where(self.fictitious, b - shift.astype(b.dtype), b)

    def products(self, X):
        """``X @ coef.T`` (the pass over ``X`` every edit shares)."""
        return X @ self.coef.T.astype(X.dtype, copy=False)

    def logits(self, X, shift=0.0, *, products=None):
        """Sub-class logits with the edit ``shift``, shape (n_samples, n_outputs)."""
        products = self.products(X) if products is None else products
        return products + self.edited_intercept(shift).astype(products.dtype)

    def pool(self, S):
        """Class scores from sub-class logits ``S`` (log-sum-exp per class).

        scikit-learn's convention: shape (n,) for two classes (the score of
        class 1 minus that of class 0), else (n, n_classes).
        """
        cls = self.output_class
        starts = np.flatnonzero(np.r_[True, np.diff(cls) != 0])
        m = np.maximum.reduceat(S, starts, axis=1)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):
            lse = np.log(np.add.reduceat(np.exp(S - m[:, cls]), starts, axis=1)) + m
        return lse[:, 1] - lse[:, 0] if lse.shape[1] == 2 else lse

    def decision_function(self, X, shift=0.0, *, products=None):
        """Pooled class scores of the edited head."""
        return self.pool(self.logits(X, shift, products=products))
