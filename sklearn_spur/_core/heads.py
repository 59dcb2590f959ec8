"""The one place that understands a classifier's last layer, in every form.

A *head* is the trained network's last linear layer: logits ``X @ W.T + b`` on
the penultimate embeddings ``X``. Users have it as a ``torch.nn.Linear``, a
``(W, b)`` or ``(W, b, classes)`` tuple of arrays or tensors, a fitted
scikit-learn linear classifier (possibly wrapped in
:class:`sklearn.frozen.FrozenEstimator`, or at the end of a Pipeline of affine
steps), or one of this package's fitted estimators. :func:`resolve_head` turns
any of them into a :class:`LinearHead`; :func:`as_linear_head` does the same for
fitted estimators and pipelines, folding affine preprocessing into ``W`` and
``b`` (the basis of :func:`sklearn_spur.to_torch`).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ..exceptions import UnfittedHeadError
from .groups import host_array

__all__ = ["LinearHead", "resolve_head", "as_linear_head", "pullback", "pullback_steps"]


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
    """

    def __init__(self, coef, intercept, classes):
        self.coef = np.atleast_2d(coef)
        self.intercept = np.asarray(intercept).reshape(-1)
        self.classes = np.asarray(classes)
        k, _ = self.coef.shape
        if self.intercept.shape[0] != k:
            raise ValueError(
                f"head: weight has {k} outputs but bias has {self.intercept.shape[0]}."
            )
        expected = 2 if k == 1 else k
        if len(self.classes) != expected:
            raise ValueError(
                f"head: {k} output(s) need {expected} classes, got {len(self.classes)}."
            )

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def astype(self, dtype) -> "LinearHead":
        return LinearHead(self.coef.astype(dtype, copy=False),
                          self.intercept.astype(dtype, copy=False), self.classes)

    def full(self):
        """``(W, b)`` with one row per class (a single binary row becomes two)."""
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

    def check_classes(self, y, *, who="head"):
        """Raise if ``y`` holds labels the head has no output for."""
        unknown = np.setdiff1d(np.unique(y), self.classes)
        if unknown.size:
            raise ValueError(
                f"{who}: y contains labels {unknown.tolist()[:5]} that the head has no "
                f"output for (head classes: {self.classes.tolist()[:10]}). A torch or "
                "(W, b) head's outputs are classes 0..C-1; pass `(W, b, classes)` to "
                "name them."
            )


def _to_numpy(a):
    return None if a is None else np.asarray(host_array(a))


def _is_torch_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _unfitted_message(head) -> str:
    name = type(head).__name__
    return (
        f"head: the {name} passed as `head` is not fitted. If you fitted it, it was "
        "most likely cloned (GridSearchCV, cross_validate and clone() hand back an "
        "unfitted copy of every scikit-learn estimator in the parameters). Wrap it so "
        "it survives cloning: `head=sklearn.frozen.FrozenEstimator(fitted_head)`."
    )


def _from_torch(module):
    import torch

    if isinstance(module, torch.nn.Sequential):
        linears = [m for m in module if isinstance(m, torch.nn.Linear)]
        others = [m for m in module if not isinstance(
            m, (torch.nn.Linear, torch.nn.Dropout, torch.nn.Identity, torch.nn.Flatten))]
        if len(linears) == 1 and not others:
            module = linears[0]
    if not isinstance(module, torch.nn.Linear):
        raise TypeError(
            f"head: a torch head must be an nn.Linear (the model's last layer), got "
            f"{type(module).__name__}."
        )
    w = _to_numpy(module.weight)
    b = _to_numpy(module.bias) if module.bias is not None else np.zeros(w.shape[0], w.dtype)
    classes = np.arange(2 if w.shape[0] == 1 else w.shape[0])
    return LinearHead(w, b, classes)


def pullback(step, w, b):
    """Pull a linear head ``(w, b)`` back through a fitted transformer step.

    Returns ``(w', b')`` with ``step.transform(x) @ w.T + b == x @ w'.T + b'``,
    or None when the step is not affine. Knows StandardScaler, PCA (not
    whitened), ``"passthrough"``, an identity FunctionTransformer, and any object
    with a ``_pullback(w, b)`` method (this package's transformers).
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return w, b
    if hasattr(step, "_pullback"):
        return step._pullback(w, b)
    if isinstance(step, FunctionTransformer) and step.func is None:
        return w, b
    if isinstance(step, StandardScaler):
        check_is_fitted(step)
        if step.scale_ is not None:
            w = w / step.scale_
        if step.mean_ is not None:
            b = b - w @ step.mean_
        return w, b
    if isinstance(step, PCA) and not step.whiten:
        check_is_fitted(step)
        w = w @ step.components_
        return w, b - w @ step.mean_
    return None


def pullback_steps(steps, w, b, *, who="to_torch"):
    """Pull ``(w, b)`` back through Pipeline ``steps`` (last step first)."""
    for name, step in reversed(steps):
        pulled = pullback(step, w, b)
        if pulled is None:
            raise TypeError(
                f"{who}: Pipeline step {name!r} ({type(step).__name__}) is not an "
                "affine map, so the pipeline does not fold into one linear layer."
            )
        w, b = pulled
    return w, b


def as_linear_head(estimator, *, who="to_torch") -> LinearHead:
    """The :class:`LinearHead` of a fitted linear classifier or Pipeline.

    Affine steps of a Pipeline are folded in: ``W' = W A``, ``b' = W c + b``.
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    if isinstance(estimator, Pipeline):
        head = as_linear_head(estimator.steps[-1][1], who=who)
        w, b = head.coef.astype(np.float64), head.intercept.astype(np.float64)
        w, b = pullback_steps(estimator.steps[:-1], w, b, who=who)
        return LinearHead(w, b, head.classes)
    if hasattr(estimator, "_linear_head"):  # this package's linear estimators
        return estimator._linear_head()
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_") or (
        hasattr(estimator, "__sklearn_tags__") and is_classifier(estimator)
    ):
        try:
            check_is_fitted(estimator)
        except NotFittedError:
            raise UnfittedHeadError(_unfitted_message(estimator)) from None
        if not (hasattr(estimator, "coef_") and hasattr(estimator, "classes_")):
            raise TypeError(
                f"{who}: {type(estimator).__name__} is not a linear classifier "
                "(no coef_/intercept_/classes_)."
            )
        intercept = np.broadcast_to(
            np.asarray(estimator.intercept_, dtype=np.asarray(estimator.coef_).dtype),
            (np.atleast_2d(estimator.coef_).shape[0],),
        ).copy()
        return LinearHead(_to_numpy(estimator.coef_), intercept, estimator.classes_)
    raise TypeError(
        f"{who}: cannot read a linear head from {type(estimator).__name__}; pass a "
        "fitted linear classifier, a Pipeline of affine steps ending in one, an "
        "nn.Linear, or a (W, b[, classes]) tuple."
    )


def resolve_head(head, X=None, y=None, *, who="head", random_state=None) -> LinearHead:
    """Turn any accepted form of ``head`` into a :class:`LinearHead`.

    Parameters
    ----------
    head : None, torch.nn.Linear, tuple, or fitted classifier
        ``None`` fits an L2 logistic regression on ``(X, y)`` (the ERM head).
    X : ndarray of shape (n_samples, n_features), default=None
        Embeddings; used to check the head's width and to fit the ERM head.
    y : ndarray of shape (n_samples,), default=None
        Labels; checked against the head's classes.
    who : str
        Name used in error messages.
    random_state : int, RandomState instance or None
        Used only when fitting the ERM head.
    """
    if head is None:
        if X is None or y is None:
            raise ValueError(f"{who}: `head=None` fits an ERM head and needs X and y.")
        lr = LogisticRegression(max_iter=1000, random_state=random_state).fit(X, y)
        resolved = as_linear_head(lr, who=who)
    elif isinstance(head, LinearHead):
        resolved = head
    elif isinstance(head, tuple):
        if len(head) not in (2, 3):
            raise ValueError(
                f"{who}: a tuple head must be (W, b) or (W, b, classes), got "
                f"{len(head)} items."
            )
        w = np.atleast_2d(_to_numpy(head[0]))
        b = _to_numpy(head[1])
        b = np.zeros(w.shape[0], w.dtype) if b is None else b
        classes = (np.arange(2 if w.shape[0] == 1 else w.shape[0]) if len(head) == 2
                   else np.asarray(head[2]))
        resolved = LinearHead(w, b, classes)
    elif _is_torch_module(head):
        resolved = _from_torch(head)
    else:
        resolved = as_linear_head(head, who=who)
    if not np.all(np.isfinite(resolved.coef)) or not np.all(np.isfinite(resolved.intercept)):
        raise ValueError(f"{who}: the head's weights contain NaN or infinity.")
    if X is not None:
        resolved.check_X(X, who=who)
        resolved = resolved.astype(X.dtype)
    if y is not None:
        resolved.check_classes(y, who=who)
    return resolved
