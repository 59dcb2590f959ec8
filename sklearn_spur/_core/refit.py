"""The refit problem a last-layer method states, and the one solve that runs it.

:class:`FitContext` is what a method may read (data, classes, groups, the
original head and its evidence); :class:`RefitProblem` is what it returns (a
batch of weighted, penalised logistic regressions whose heads are averaged);
:func:`solve` runs it through the shared solver, scales the penalty in one
place and warns once when the solver does not converge.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .evidence import head_evidence
from .groups import balanced_weights
from .solver import fit_logistic

__all__ = ["FitContext", "RefitProblem", "class_weights", "head_start", "solve"]


@dataclass
class FitContext:
    """Everything a method's hook may read about the data it is fitted on.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated embeddings (float32 or float64, never copied).
    y : ndarray of shape (n_samples,)
        Class labels as given.
    y_idx : ndarray of shape (n_samples,) of int
        Index of every label into ``classes``.
    classes : ndarray of shape (n_classes,)
        Sorted class labels (the head's, when a head is given).
    spurious : ndarray or None
        The routed attribute, when given.
    groups : Groups or None
        Encoded (class, attribute) groups, when ``spurious`` is given.
    head : LinearHead or None
        The original head, resolved and cast to ``X``'s dtype.
    rng : numpy.random.Generator
        Seeded from the estimator's ``random_state``.
    stage : {"final", "select"}
        Whether the hook states the final refit or a selection candidate's.
    shared : dict
        Quantities a method computes once on the whole data and reuses in
        every stage (the same dict in every subset).
    inferred : ndarray of shape (n_samples,) or None
        Pseudo-groups inferred without labels on the whole data (set by
        :meth:`~sklearn_spur._core.template.LastLayerClassifier._inferred_groups`
        before any subset is taken; subsets get their rows).
    """

    X: np.ndarray
    y: np.ndarray
    y_idx: np.ndarray
    classes: np.ndarray
    spurious: Any
    groups: Any
    head: Any
    rng: np.random.Generator
    stage: str = "final"
    shared: dict = field(default_factory=dict, repr=False)
    inferred: Any = field(default=None, repr=False)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_outputs(self) -> int:
        """Solver outputs: one logit for two classes, else one per class."""
        return 1 if self.n_classes == 2 else self.n_classes

    @cached_property
    def evidence(self):
        """The head's :class:`~sklearn_spur._core.evidence.HeadEvidence` on ``X``."""
        if self.head is None:
            raise ValueError("this method needs the original head (`head=`).")
        return head_evidence(self.head, self.X, self.y_idx)

    @property
    def strata(self):
        """Group codes when groups are known, else class indices."""
        return self.y_idx if self.groups is None else self.groups.codes

    def subset(self, rows, stage):
        """The context restricted to ``rows`` (copies those rows of ``X``)."""
        groups = None
        if self.groups is not None:
            groups = replace(self.groups, codes=self.groups.codes[rows])
        spurious = None if self.spurious is None else self.spurious[rows]
        inferred = None if self.inferred is None else self.inferred[rows]
        return FitContext(self.X[rows], self.y[rows], self.y_idx[rows], self.classes,
                          spurious, groups, self.head, self.rng, stage, self.shared,
                          inferred)


@dataclass
class RefitProblem:
    """A batch of ``B`` penalised logistic regressions whose heads are averaged.

    Attributes
    ----------
    weights : ndarray of shape (n,) or (B, n), or None
        Sample weights per problem (a subsample is a 0/1 row).
    C : float or ndarray of shape (B,)
        Inverse penalty strength, scaled by the total weight in :func:`solve`
        (``1 / (C * sum(weights))``, scikit-learn's convention).
    penalty : {"l2", "l1"}
        Penalty kind.
    reg : float or None
        When given, the penalty is ``reg * ||W - anchor||^2`` added to the
        weighted *mean* loss, unscaled by ``C`` (AFR's form); ``C`` is ignored.
    anchor : ndarray of shape (K, d) or None
        Pull the weights toward ``anchor`` (raw ``X`` space) instead of 0.
    X, y_idx : ndarray or None
        Operands other than the context's (a sub-class target, a transformed X).
    n_classes : int or None
        Classes of ``y_idx`` when it is not the context's.
    mean, scale : ndarray of shape (d,) or None
        Implicit standardisation; an infinite scale zeroes a unit exactly.
    coef_init, intercept_init : ndarray or None
        Start point in raw ``X`` space.
    """

    weights: Any = None
    C: Any = 1.0
    penalty: str = "l2"
    reg: Any = None
    anchor: Any = None
    X: Any = None
    y_idx: Any = None
    n_classes: Any = None
    mean: Any = None
    scale: Any = None
    coef_init: Any = None
    intercept_init: Any = None


def penalty_strength(C, weights, n_samples):
    """The one place that scales the penalty: ``1 / (C * total sample weight)``."""
    C = np.asarray(C, dtype=np.float64)
    total = (np.full(C.shape, float(n_samples)) if weights is None
             else np.atleast_2d(weights).sum(axis=1, dtype=np.float64))
    return 1.0 / (C * total)


def solve(ctx, problem, *, max_iter, tol, who):
    """Solve a :class:`RefitProblem` with the shared solver; warn once if unconverged.

    Returns the raw :class:`~sklearn_spur._core.solver.LogisticFit` (all ``B``
    heads; callers average them).
    """
    X = ctx.X if problem.X is None else problem.X
    y_idx = ctx.y_idx if problem.y_idx is None else problem.y_idx
    n_classes = ctx.n_classes if problem.n_classes is None else problem.n_classes
    weights = problem.weights
    if weights is not None:
        weights = np.atleast_2d(np.asarray(weights, dtype=X.dtype))
        rows = np.flatnonzero(weights.any(axis=0))
        if len(rows) < 0.9 * X.shape[0]:  # fit on the rows in use
            X, y_idx, weights = X[rows], y_idx[rows], weights[:, rows]
    lam = (2.0 * float(problem.reg) if problem.reg is not None
           else penalty_strength(problem.C, weights, X.shape[0]))
    kwargs = {"l1": lam} if problem.penalty == "l1" else {"l2": lam}
    if problem.anchor is not None:
        kwargs["l2_anchor"] = problem.anchor
    fit = fit_logistic(X, y_idx, n_classes, weights=weights, mean=problem.mean,
                       scale=problem.scale, coef_init=problem.coef_init,
                       intercept_init=problem.intercept_init, max_iter=max_iter,
                       tol=tol, **kwargs)
    if not (np.all(np.isfinite(fit.coef)) and np.all(np.isfinite(fit.intercept))):
        raise ValueError(
            f"{who}: the refit head is not finite. X's values span "
            f"{float(np.abs(X).max()):.3g} in magnitude; standardise the embeddings "
            "(or keep `standardize=True`) and check X for extreme values.")
    if not np.all(fit.converged):
        warnings.warn(
            f"{who}: the solver did not converge in {max_iter} iterations; increase "
            "max_iter, raise tol, or standardise the embeddings.",
            ConvergenceWarning, stacklevel=1)
    return fit


_SHARED = ("penalty", "X", "y_idx", "n_classes", "mean", "scale", "anchor", "reg")


def _batch_size(problem):
    w = problem.weights
    return max(1 if w is None else np.atleast_2d(w).shape[0], np.size(problem.C))


def _same(a, b):
    """Identical operands (arrays by identity, scalars and strings by value)."""
    if a is b:
        return True
    return (isinstance(a, (str, int, float)) and isinstance(b, (str, int, float))
            and a == b)


def _stacks(problems):
    """Consecutive runs of problems that differ only in weights, C and start."""
    runs = [[problems[0]]]
    for p in problems[1:]:
        q = runs[-1][0]
        same = all(_same(getattr(p, f), getattr(q, f)) for f in _SHARED)
        same = same and (p.weights is None) == (q.weights is None)
        if same:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _stack(problems):
    """One problem of ``sum(B_i)`` fits from several; returns it and the sizes."""
    sizes = [_batch_size(p) for p in problems]
    if len(problems) == 1:
        return problems[0], sizes
    n = None if problems[0].weights is None else np.atleast_2d(problems[0].weights).shape[1]
    weights = None if n is None else np.concatenate(
        [np.broadcast_to(np.atleast_2d(p.weights), (b, n)) for p, b in zip(problems, sizes)])
    C = np.concatenate([np.broadcast_to(np.asarray(p.C, float).ravel(), (b,))
                        for p, b in zip(problems, sizes)])
    return replace(problems[0], weights=weights, C=C, coef_init=None,
                   intercept_init=None), sizes




def class_weights(ctx, class_weight):
    """Per-sample weights for ``class_weight`` (None, "balanced" or a dict).

    A dict maps class labels to positive, finite weights (1 for classes it
    leaves out); anything else is refused, naming the class.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        return balanced_weights(ctx.y_idx).astype(ctx.X.dtype)
    unknown = [k for k in class_weight if k not in set(ctx.classes.tolist())]
    if unknown:
        raise ValueError(
            f"class_weight: keys {unknown[:5]} are not classes of y "
            f"({ctx.classes.tolist()[:10]}).")
    per_class = np.array([class_weight.get(c, 1.0) for c in ctx.classes.tolist()],
                         dtype=np.float64)
    if not np.all(np.isfinite(per_class) & (per_class > 0)):
        bad = {c: w for c, w in zip(ctx.classes.tolist(), per_class.tolist())
               if not (np.isfinite(w) and w > 0)}
        raise ValueError(f"class_weight: weights must be positive and finite; got {bad}.")
    return per_class.astype(ctx.X.dtype)[ctx.y_idx]


def head_start(ctx):
    """The original head in the solver's convention for ``ctx.classes`` (or None).

    One row (the logit of ``classes[1]``) for two classes, else one per class.
    """
    if ctx.head is None:
        return None, None
    W, b = ctx.head.full()
    rows = np.searchsorted(ctx.head.classes, ctx.classes)
    W, b = W[rows], b[rows]
    if ctx.n_classes == 2:
        return (W[1] - W[0])[None], b[1:] - b[:1]
    return W, b
