"""Paths of :func:`~sklearn_spur._core.solver.fit_logistic` for fewer samples than features.

With ``n < d`` the primal problem has ``B * K * d`` variables (twice that with
L1), far more than the data can determine, and L-BFGS-B's own bookkeeping on
them dominates (DFR on 50 x 5000: minutes). Two paths replace it:

- L2 (with or without an anchor), no subspace penalty: by the representer
  theorem the penalised weights differ from the anchor by a combination of the
  samples, so the problem is solved exactly in the ``r <= n`` dimensional span
  of the (metric-scaled, centred) samples, from the eigendecomposition of their
  ``n x n`` Gram matrix: a primal problem with ``r`` features instead of ``d``.
- L1: an active set. The problems are solved on a small working set of
  columns, the optimality of the others is checked with one full gradient,
  and the columns that violate it are added, until none does. An L1 solution
  has at most about ``n`` nonzero weights per problem, so the sets stay small.
"""

from __future__ import annotations

import numpy as np

from ._logistic import Objective, primal, residual


def _pow2(v):
    return 2.0 ** np.round(np.log2(v))


def gram_l2(X, onehot, w_samples, mean, m, anchor_raw, l2, coef0, icpt0, max_iter,
            tol):
    """Solve the L2 problems in the span of the samples.

    The objective is ``loss(W_raw x + b) + l2_b / 2 * sum_j (W_raw_j -
    A_j)^2 / m_j^2`` (columns with ``m_j = 0`` are not seen: their weight is
    the anchor's, that is zero); with ``M = (X - mean) * m`` the optimum is
    ``W_raw = A + m * M^T alpha`` for some ``alpha`` of shape (n, B * K).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    onehot, w_samples : see :class:`~._logistic.Objective`
    mean, m : ndarray of shape (d,)
    anchor_raw : ndarray of shape (B, K, d) or None
        Raw-space anchor (zeros where ``m`` is zero).
    l2 : ndarray of shape (B,)
    coef0, icpt0 : ndarray of shape (B, K, d) and (B, K)
        Raw-space start (its component outside the span is dropped).
    max_iter, tol : see ``fit_logistic``

    Returns
    -------
    coef, intercept, n_iter, converged
    """
    dtype = X.dtype
    B, K, d = coef0.shape
    M = X - mean
    M *= m
    top = float(np.abs(M).max()) if M.size else 0.0
    g = _pow2(top) if top > 0 else 1.0
    M /= dtype.type(g)  # entries in [0.7, 1.4]: the Gram matrix cannot overflow
    G = (M @ M.T).astype(np.float64)
    evals, U = np.linalg.eigh(G)
    keep = evals > evals[-1] * len(evals) * np.finfo(dtype).eps
    evals, U = evals[keep], U[:, keep]
    Z = U * np.sqrt(evals)  # (n, r): Z Z^T = G
    # Scores W~ x~ = Z beta' + offset; penalty (l2 / g^2) / 2 |beta'|^2.
    anchor_part = np.zeros((B, K, d), np.float64) if anchor_raw is None else anchor_raw
    offset = None
    if anchor_raw is not None:
        offset = (X @ anchor_raw.reshape(B * K, d).T.astype(dtype)).astype(np.float64)
        offset = offset.reshape(-1, B, K) - np.einsum("bkd,d->bk", anchor_raw, mean)
    r = Z.shape[1]
    ones = np.ones(r)
    obj = Objective(Z, onehot.astype(np.float64), w_samples.astype(np.float64),
                    np.zeros(r), ones, (l2 / g**2)[:, None, None] * ones, offset=offset)
    # Start: project the start's deviation from the anchor on the span.
    dev = (coef0 - anchor_part).astype(np.float64)  # raw space
    with np.errstate(divide="ignore", invalid="ignore"):
        v0 = np.where(m > 0, dev / m, 0).reshape(B * K, d).astype(dtype)
    beta0 = (g * ((v0 @ M.T).astype(np.float64) @ U) / np.sqrt(evals)).reshape(B, K, r)
    c0 = (icpt0 + np.einsum("bkd,d->bk", coef0, mean)).astype(np.float64)
    beta, c, n_iter, converged = primal(obj, 0.0, beta0, c0, max_iter, tol)
    # Fold back: W_raw = A + m^2 (X - mean)^T alpha / g^2, alpha = U evals^-1/2 beta'.
    alpha = (U / np.sqrt(evals)) @ beta.reshape(B * K, r).T  # (n, B*K)
    alpha = alpha.astype(dtype)
    Xa = (X.T @ alpha).T - alpha.sum(axis=0)[:, None] * mean  # (B*K, d)
    # (m / g) twice, in float64: m^2 alone overflows float32 for a column of
    # near-constant values (m = 1 / std up to ~1e32), whose raw weight is finite
    mg = m.astype(np.float64) / g
    coef = anchor_part + mg * (mg * Xa.reshape(B, K, d).astype(np.float64))
    coef = coef.astype(dtype)
    intercept = (c - np.einsum("bkd,d->bk", coef, mean)).astype(dtype)
    return coef, intercept, n_iter, converged


def working_set_l1(obj, l1w, W, c, max_iter, tol, grow=None):
    """Active-set L1 solve: ``(W, c, n_iter, converged)``, like ``primal``.

    ``grow`` is how many violating columns join the set per round (default:
    the number of samples, at least 10).
    """
    B = W.shape[0]
    n = obj.X.shape[0]
    grow = max(10, n) if grow is None else grow
    active = (W != 0).any(axis=(0, 1))
    grad = obj.grad(W, c)
    n_iter, converged = 0, np.zeros(B, bool)
    while True:
        # Distance of -gradient to l1 * [-1, 1] at the columns held at zero.
        viol = np.maximum(np.abs(grad[0]) - l1w, 0).max(axis=(0, 1), initial=0)
        viol[active] = 0
        if n_iter and converged.all() and viol.max() <= tol:
            break
        if n_iter >= max_iter:
            break
        out = np.flatnonzero(viol > tol)
        add = out[np.argsort(-viol[out], kind="stable")[:max(grow, active.sum())]]
        active[add] = True
        cols = np.flatnonzero(active)
        sub = obj.restrict(cols)
        Ws, c, it, conv_sub = primal(sub, l1w[..., cols], np.ascontiguousarray(
            W[..., cols]), c, max_iter - n_iter, tol)
        n_iter += it
        W = np.zeros_like(W)
        W[..., cols] = Ws
        grad = obj.grad(W, c)
        converged = conv_sub & (residual(obj, l1w, W, c, grad) <= tol)
    return W, c, n_iter, converged
