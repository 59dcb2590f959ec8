"""The editor's strength on data: ``strength="auto"`` and the strength path.

:func:`select_strength` chooses the strength of best held-out worst accuracy;
:func:`strength_path` scores many strengths with one product of ``X`` with the
sub-class weights.
"""

from __future__ import annotations

import numpy as np

from .._core.base import scores_to_index
from .._core.heads import resolve_head
from .._core.selection import stratified_halves, worst_stratum_accuracy
from .._core.subclass_head import SubclassHead
from ._editing import _WHO, log_proba, strength_grid, strength_shifts

__all__ = ["select_strength", "strength_path"]


def select_strength(editor, ctx, fit_head):
    """``strength="auto"``: the strength of best held-out worst accuracy.

    The sub-class head is refit (``fit_head(editor, half_ctx)``, the template's
    uncached fit) on one half of the context and every strength of
    :func:`strength_grid` scored on the other half in one pass, by worst
    accuracy over the editor's selection strata (the groups when ``spurious``
    is given, else inferred groups or the classes). The first best wins.

    Returns
    -------
    strength : float
    scores : dict
        ``{strength: held-out score}``.
    """
    if ctx.head is None:  # the ERM head defines the inferred groups
        ctx.head = resolve_head(None, ctx.X, ctx.y, who=_WHO)
    editor._subclass_groups(ctx)
    strata = editor._selection_strata(ctx)
    half = stratified_halves(strata, ctx.rng)
    fit_ctx = ctx.subset(np.flatnonzero(half), "select")
    coef, intercept, _ = fit_head(editor, fit_ctx)
    plan = fit_ctx.shared["plan"]
    head = SubclassHead(coef, intercept, plan.output_class, plan.mask)
    rows = np.flatnonzero(~half)
    X = ctx.X[rows]
    strengths = [float(v) for v in strength_grid()]
    products = head.products(X)
    pred = np.stack([
        scores_to_index(head.decision_function(X, shift, products=products))
        for shift in strength_shifts(strengths, plan.mask, plan.prior_shift)], axis=1)
    scores = worst_stratum_accuracy(pred, ctx.y_idx[rows], strata[rows])
    return strengths[int(np.argmax(scores))], dict(zip(strengths, scores.tolist()))


def strength_path(est, X, strengths, method):
    """:meth:`SingleWeightEditor.strength_path` on validated ``X``: one product
    of ``X`` with the sub-class weights, then biases and pooling per strength."""
    if method not in ("predict", "decision_function", "predict_proba"):
        raise ValueError(
            f"{_WHO}: method must be 'predict', 'decision_function' or "
            f"'predict_proba', got {method!r}.")
    if strengths is None:
        strengths = strength_grid()
    if isinstance(strengths, np.ndarray):
        strengths = list(np.ravel(strengths))
    elif np.isscalar(strengths):
        strengths = [strengths]
    head = est._subclass_head()
    products = head.products(X)
    out = []
    for shift in est._shifts(strengths):  # strengths, not samples
        # The very operations of decision_function, so each row equals it exactly.
        scores = head.decision_function(X, shift, products=products)
        if method == "predict":
            scores = est.classes_[scores_to_index(scores)]
        elif method == "predict_proba":
            scores = np.exp(log_proba(scores))
        out.append(scores)
    return np.stack(out)
