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
import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ..exceptions import UnfittedHeadError
from .affine import pullback, pullback_steps
from .linear import LinearHead, _numeric, _to_numpy, canonical_head

__all__ = [
    "LinearHead",
    "as_linear_head",
    "canonical_head",
    "pullback",
    "pullback_steps",
    "resolve_head",
]


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


def linear_of(module, *, who="head"):
    """The ``nn.Linear`` that ``module`` is (or a Sequential of one, with Dropout,
    Identity or Flatten around it) and its index in that Sequential, else raise."""
    import torch

    index = None
    if isinstance(module, torch.nn.Sequential):
        linears = [i for i, m in enumerate(module) if isinstance(m, torch.nn.Linear)]
        harmless = (torch.nn.Linear, torch.nn.Dropout, torch.nn.Identity,
                    torch.nn.Flatten)
        others = [m for m in module if not isinstance(m, harmless)]
        if len(linears) == 1 and not others:
            index = linears[0]
            module = module[index]
    if not isinstance(module, torch.nn.Linear):
        raise TypeError(
            f"{who}: a torch head must be an nn.Linear (the model's last layer), got "
            f"{type(module).__name__}."
        )
    return module, index


def _from_torch(module, *, who="head"):
    import torch

    module, _ = linear_of(module, who=who)
    if type(module).forward is not torch.nn.Linear.forward:
        raise TypeError(
            f"{who}: the {type(module).__name__} head overrides nn.Linear.forward, so "
            "its logits need not be x @ weight.T + bias. Pass the logits' own "
            "(W, b) as a tuple."
        )
    w = _to_numpy(module.weight, who=who)
    b = (_to_numpy(module.bias, who=who, name="bias") if module.bias is not None
         else np.zeros(w.shape[0], w.dtype))
    return canonical_head(w, b, np.arange(2 if w.shape[0] == 1 else w.shape[0]),
                          who=who)


def _check_reads_as_linear(estimator, head, who):
    """Refuse a classifier whose decision_function is not ``X @ coef.T + b``.

    (e.g. ``SVC`` with three classes: one-vs-one coefficients). Compared on a
    few random points, in float64.
    """
    if not hasattr(estimator, "decision_function"):
        return
    probe = np.random.default_rng(0).standard_normal((8, head.n_features))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.asarray(estimator.decision_function(probe), dtype=np.float64)
    except Exception:  # noqa: BLE001 -- not on plain arrays: nothing to compare
        return
    got = head.astype(np.float64).decision_function(probe)
    tol = 1e-4 * max(1.0, float(np.abs(ref).max(initial=0.0)))
    if ref.shape != got.shape or not np.allclose(got, ref, rtol=0, atol=tol):
        raise TypeError(
            f"{who}: the decision_function of {type(estimator).__name__} is not "
            "X @ coef_.T + intercept_ (e.g. one-vs-one SVC, or a non-affine step), so "
            "it cannot be read as one linear head. Use a linear classifier with one "
            "row per class (LogisticRegression, RidgeClassifier, LinearSVC, ...)."
        )


def _search_message(estimator, who) -> str | None:
    from sklearn.model_selection._search import BaseSearchCV

    if not isinstance(estimator, BaseSearchCV):
        return None
    return (
        f"{who}: got a {type(estimator).__name__}, not the classifier it selected. "
        "Pass `search.best_estimator_` (refit=True), wrapped in "
        "sklearn.frozen.FrozenEstimator where it must survive cloning."
    )


def as_linear_head(estimator, *, who="to_torch") -> LinearHead:
    """The :class:`LinearHead` of a fitted linear classifier or Pipeline.

    Affine steps of a Pipeline are folded in: ``W' = W A``, ``b' = W c + b``;
    the result is checked against the estimator's own ``decision_function``.
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    message = _search_message(estimator, who)
    if message:
        raise TypeError(message)
    if isinstance(estimator, Pipeline):
        head = as_linear_head(estimator.steps[-1][1], who=who)
        w, b = head.coef.astype(np.float64), head.intercept.astype(np.float64)
        w, b = pullback_steps(estimator.steps[:-1], w, b, who=who)
        full = None if head._full is None else pullback_steps(
            estimator.steps[:-1], *(a.astype(np.float64) for a in head._full), who=who)
        folded = LinearHead(w, b, head.classes, full=full)
        _check_reads_as_linear(estimator, folded, who)
        return folded
    if hasattr(estimator, "_linear_head"):  # this package's linear estimators
        return estimator._linear_head()
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_") or (
        hasattr(estimator, "__sklearn_tags__") and is_classifier(estimator)
    ):
        try:
            check_is_fitted(estimator)
        except NotFittedError:
            if who == "to_torch":
                raise NotFittedError(
                    f"to_torch: this {type(estimator).__name__} is not fitted; fit it "
                    "(or the Pipeline that ends in it) before exporting it."
                ) from None
            raise UnfittedHeadError(_unfitted_message(estimator)) from None
        if not (hasattr(estimator, "coef_") and hasattr(estimator, "classes_")):
            raise TypeError(
                f"{who}: {type(estimator).__name__} is not a linear classifier "
                "(no coef_/intercept_/classes_)."
            )
        coef = np.atleast_2d(_numeric(estimator.coef_, who=who, name="coef_"))
        intercept = np.broadcast_to(
            _numeric(estimator.intercept_, who=who, name="intercept_"),
            (coef.shape[0],)).astype(coef.dtype)
        head = canonical_head(coef, intercept, estimator.classes_, who=who)
        _check_reads_as_linear(estimator, head, who)
        return head
    raise TypeError(
        f"{who}: cannot read a linear head from {type(estimator).__name__}; pass a "
        "fitted linear classifier, a Pipeline of affine steps ending in one, an "
        "nn.Linear, or a (W, b[, classes]) tuple."
    )


def resolve_head(head, X=None, y=None, *, who="head", random_state=None) -> LinearHead:
    """Turn any accepted form of ``head`` into a :class:`LinearHead`.

    The result follows scikit-learn's conventions whatever the form: classes
    sorted (the rows are reordered to match), and a single logit row for two
    classes, so ``decision_function`` is 1-D there
    (:meth:`LinearHead.full` keeps the per-class rows).

    Parameters
    ----------
    head : None, torch.nn.Linear, tuple, or fitted classifier
        ``None`` fits an L2 logistic regression on ``(X, y)`` (the ERM head).
        A tuple is ``(W, b)`` (outputs are classes ``0..C-1``; ``b`` may be
        None) or ``(W, b, classes)``, of arrays or tensors.
    X : ndarray of shape (n_samples, n_features), default=None
        Embeddings; used to check the head's width and to fit the ERM head.
    y : ndarray of shape (n_samples,), default=None
        Labels; checked against the head's classes.
    who : str
        Name used in error messages.
    random_state : int, RandomState instance or None
        Used only when fitting the ERM head.

    Returns
    -------
    head : LinearHead

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur._core.heads import resolve_head
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0]]); b = np.array([0.0, 0.5])
    >>> head = resolve_head((W, b, ["dog", "cat"]))
    >>> head.classes.tolist(), head.coef.tolist(), head.intercept.tolist()
    (['cat', 'dog'], [[1.0, -1.0]], [-0.5])
    """
    if head is None:
        if X is None or y is None:
            raise ValueError(f"{who}: `head=None` fits an ERM head and needs X and y.")
        lr = LogisticRegression(max_iter=1000, random_state=random_state).fit(X, y)
        resolved = as_linear_head(lr, who=who)
    elif isinstance(head, LinearHead):
        resolved = canonical_head(head.coef, head.intercept, head.classes, who=who)
    elif isinstance(head, tuple):
        if len(head) not in (2, 3):
            raise ValueError(
                f"{who}: a tuple head must be (W, b) or (W, b, classes), got "
                f"{len(head)} items."
            )
        w = np.atleast_2d(_numeric(head[0], who=who, name="weight"))
        b = (np.zeros(w.shape[0], w.dtype) if head[1] is None
             else _numeric(head[1], who=who, name="bias"))
        classes = (np.arange(2 if w.shape[0] == 1 else w.shape[0]) if len(head) == 2
                   else head[2])
        resolved = canonical_head(w, b, classes, who=who)
    elif _is_torch_module(head):
        resolved = _from_torch(head, who=who)
    else:
        message = _search_message(head, who)
        if message:
            raise TypeError(message)
        resolved = as_linear_head(head, who=who)
    if not (np.isfinite(resolved.coef).all() and np.isfinite(resolved.intercept).all()):
        raise ValueError(f"{who}: the head's weights contain NaN or infinity.")
    if X is not None:
        resolved.check_X(X, who=who)
        resolved = resolved.astype(X.dtype)
    if y is not None:
        resolved.check_classes(y, who=who)
    return resolved
