"""Batched logistic regression for last-layer retraining.

Every method of the package ends by refitting a linear head, often many times
(DFR: 7 regularisation values, then 20 group-balanced subsamples). Fitting them
one at a time with a general-purpose solver repeats the same passes over the
embeddings. :func:`fit_logistic` fits ``B`` problems *at once*: the problems
share ``X`` and differ by their per-sample weights (a subsample is a 0/1 weight
vector), their penalties and their starting point. Each iteration costs two
matrix products of ``X`` with ``B * K`` columns, in ``X``'s dtype (float32
stays float32); standardisation is applied implicitly, so ``X`` is never copied.

The problems go to scipy's L-BFGS-B, with the loss and gradient evaluated as
above (an L1 penalty made smooth by splitting the weights into positive and
negative parts under bounds): tens of iterations where a first-order method
needs hundreds on raw or weakly regularised embeddings. Where its line search
stalls first (float32 losses are inexact near the optimum), FISTA (accelerated
proximal gradient with adaptive restart) goes on from that point; its step is
``1 / L`` with ``L`` a power-iteration estimate of each problem's Lipschitz
constant, and the L1 penalty is handled by soft-thresholding. The
intercept is never penalised (liblinear's penalises it, the only difference to
scikit-learn's L1 ``LogisticRegression(solver="liblinear")`` objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_softmax, logsumexp, softmax

__all__ = ["LogisticFit", "fit_logistic", "standardize_stats"]


@dataclass
class LogisticFit:
    """Result of :func:`fit_logistic`.

    Attributes
    ----------
    coef : ndarray of shape (B, K, d)
        Weights, ``K = 1`` for two classes (logit of class 1), else one per class.
        They act on raw ``X`` (standardisation folded in).
    intercept : ndarray of shape (B, K)
    n_iter : int
        Iterations run.
    converged : ndarray of shape (B,) of bool
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: np.ndarray


def _as_batch(value, B, dtype):
    arr = np.asarray(value, dtype=dtype)
    return np.broadcast_to(arr.reshape(-1), (B,)).copy() if arr.size in (1, B) else None


def fit_logistic(
    X,
    y,
    n_classes,
    *,
    weights=None,
    l1=0.0,
    l2=0.0,
    subspace=None,
    subspace_penalty=0.0,
    mean=None,
    scale=None,
    coef_init=None,
    intercept_init=None,
    max_iter=2000,
    tol=1e-4,
    power_iter=15,
):
    """Fit ``B`` penalised logistic regressions on the same embeddings at once.

    For each problem ``b`` it minimises, over ``W`` (K x d) and ``c`` (K,)::

        sum_i w_bi * loss(y_i, W x~_i + c) / sum_i w_bi
            + l1_b * |W|_1 + l2_b / 2 * |W|^2 + sub_b * |W V^T|^2

    with ``x~ = (x - mean) / scale`` (implicit), ``loss`` the binary (``K = 1``)
    or multinomial logistic loss and ``V`` the rows of ``subspace``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        Embeddings; never copied or modified.
    y : ndarray of shape (n,) of int
        Class index in ``[0, n_classes)``.
    n_classes : int
        Number of classes; two gives a single logit.
    weights : ndarray of shape (n,) or (B, n), default=None
        Non-negative sample weights per problem; ``None`` is all ones.
    l1, l2, subspace_penalty : float or ndarray of shape (B,)
        Penalty strengths per problem.
    subspace : ndarray of shape (k, d), default=None
        Orthonormal rows ``V`` whose span the weights are discouraged from.
    mean, scale : ndarray of shape (d,), default=None
        Implicit standardisation of ``X``.
    coef_init : ndarray of shape (K, d) or (B, K, d), default=None
        Starting weights in the raw ``X`` space (warm start); zeros by default.
    intercept_init : ndarray of shape (K,) or (B, K), default=None
        Starting intercepts in the raw ``X`` space.
    max_iter : int
        Maximum iterations.
    tol : float
        Stop when the proximal-gradient residual (zero at the optimum) is below
        ``tol`` in max norm for every problem.
    power_iter : int
        Power iterations estimating each problem's Lipschitz constant (each costs
        two passes over ``X``, like a solver iteration); the estimate is inflated
        by 1.3 to stay above the true value.

    Returns
    -------
    result : LogisticFit
    """
    dtype = X.dtype
    n, d = X.shape
    K = 1 if n_classes == 2 else n_classes
    w_samples = np.ones((1, n), dtype) if weights is None else np.atleast_2d(
        np.asarray(weights, dtype=dtype))
    B = max(w_samples.shape[0], *(np.size(v) for v in (l1, l2, subspace_penalty)))
    if w_samples.shape[0] not in (1, B):
        raise ValueError("weights must have 1 or B rows.")
    w_samples = w_samples / w_samples.sum(axis=1, keepdims=True)  # (B or 1, n)
    l1 = _as_batch(l1, B, dtype)
    l2 = _as_batch(l2, B, dtype)
    sub = _as_batch(subspace_penalty, B, dtype)
    mean = np.zeros(d, dtype) if mean is None else np.asarray(mean, dtype)
    inv_scale = np.ones(d, dtype) if scale is None else (1 / np.asarray(scale, dtype))
    V = None if subspace is None else np.asarray(subspace, dtype).reshape(-1, d)

    onehot = np.zeros((n, K), dtype)
    if K == 1:
        onehot[:, 0] = y == 1
    else:
        onehot[np.arange(n), y] = 1

    # The optimisation variables live in the standardised space.
    def to_std(coef, icpt):
        coef = np.broadcast_to(np.asarray(coef, dtype), (B, K, d)) / inv_scale
        icpt = np.broadcast_to(np.asarray(icpt, dtype), (B, K)) + np.einsum(
            "bkd,d->bk", coef * inv_scale, mean)
        return np.ascontiguousarray(coef), np.ascontiguousarray(icpt)

    W = np.zeros((B, K, d), dtype)
    c = np.zeros((B, K), dtype)
    if coef_init is not None:
        W, c = to_std(coef_init, np.zeros(K, dtype) if intercept_init is None
                      else intercept_init)

    def scores(Wm, cm):
        # logits of x~ = (x - mean) * inv_scale, without forming x~.
        Wr = Wm * inv_scale  # (B, K, d)
        z = X @ Wr.reshape(B * K, d).T  # (n, B*K)
        z = z.reshape(n, B, K)
        z += cm[None] - np.einsum("bkd,d->bk", Wr, mean)[None]
        return z

    def residual(z):
        # (p - onehot) weighted by w_bi / sum_i w_bi, shape (n, B, K).
        p = expit(z) if K == 1 else softmax(z, axis=2)
        p -= onehot[:, None, :]
        p *= w_samples.T[:, :, None]
        return p

    def smooth_grad(Wm, cm, z=None):
        r = residual(scores(Wm, cm) if z is None else z)
        # X.T @ r, not r.T @ X: OpenBLAS is up to 20x slower on the latter layout.
        g_raw = (X.T @ r.reshape(n, B * K)).T.reshape(B, K, d)
        r_sum = r.sum(axis=0)  # (B, K)
        gW = (g_raw - r_sum[:, :, None] * mean) * inv_scale
        gW += l2[:, None, None] * Wm
        if V is not None:
            gW += 2 * sub[:, None, None] * ((Wm @ V.T) @ V)
        return gW, r_sum

    # Quasi-Newton first; FISTA goes on from its point only if its line search stalls.
    W, c, it, converged = _lbfgs(W, c, scores, smooth_grad, onehot, w_samples, l1, l2,
                                 sub, V, max_iter, tol)
    if converged.all() or it >= max_iter:
        coef = W * inv_scale
        intercept = c - np.einsum("bkd,d->bk", coef, mean)
        return LogisticFit(coef=coef, intercept=intercept, n_iter=it,
                           converged=converged)

    # Lipschitz constants by power iteration on the weighted Gram matrix of [x~, 1].
    rng = np.random.default_rng(0)
    v = rng.standard_normal((B, d + 1)).astype(dtype)
    lam = np.ones(B, dtype)
    for _ in range(power_iter):
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        u = X @ (v[:, :d] * inv_scale).T + (v[:, d] - (v[:, :d] * inv_scale) @ mean)
        u *= w_samples.T
        v_new = np.empty_like(v)
        v_new[:, :d] = ((X.T @ u).T - u.sum(axis=0)[:, None] * mean) * inv_scale
        v_new[:, d] = u.sum(axis=0)
        lam = np.linalg.norm(v_new, axis=1)
        v = v_new
    curvature = 0.25 if K == 1 else 0.5
    L = 1.3 * curvature * lam + l2 + 2 * sub + np.finfo(dtype).eps
    step = (1.0 / L).astype(dtype)[:, None, None]

    Y_W, Y_c = W.copy(), c.copy()
    t = np.ones(B, dtype)
    converged = np.zeros(B, bool)
    start = it
    for it in range(start + 1, max_iter + 1):
        gW, gc = smooth_grad(Y_W, Y_c)
        W_new = Y_W - step * gW
        thr = (step[:, 0, 0] * l1)[:, None, None]
        W_new = np.sign(W_new) * np.maximum(np.abs(W_new) - thr, 0)
        c_new = Y_c - step[:, :, 0] * gc
        res = np.maximum(np.abs(Y_W - W_new).max(axis=(1, 2)),
                         np.abs(Y_c - c_new).max(axis=1)) / step[:, 0, 0]
        converged = res <= tol
        if converged.all():
            W, c = W_new, c_new
            break
        # Adaptive restart (O'Donoghue & Candes): drop momentum when it points uphill.
        uphill = np.einsum("bkd,bkd->b", Y_W - W_new, W_new - W) + np.einsum(
            "bk,bk->b", Y_c - c_new, c_new - c) > 0
        t = np.where(uphill, 1, t)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        mom = ((t - 1) / t_new).astype(dtype)
        Y_W = W_new + mom[:, None, None] * (W_new - W)
        Y_c = c_new + mom[:, None] * (c_new - c)
        W, c, t = W_new, c_new, t_new

    coef = W * inv_scale
    intercept = c - np.einsum("bkd,d->bk", coef, mean)
    return LogisticFit(coef=coef, intercept=intercept, n_iter=it, converged=converged)


def _lbfgs(W, c, scores, smooth_grad, onehot, w_samples, l1, l2, sub, V, max_iter,
           tol):
    """Minimise the objectives with scipy's L-BFGS-B.

    The ``B`` problems are independent, so their objectives are summed and
    solved as one; the gradient of the sum with respect to a problem's
    variables is that problem's gradient, so the stopping test (max-norm of
    the gradient at most ``tol``, scikit-learn's lbfgs test on the same
    sample-averaged objective) holds for every problem. An L1 penalty is made
    smooth by splitting ``W = P - N`` with ``P, N >= 0`` (bounds L-BFGS-B
    keeps exactly, so zeros are exact) and ``l1 * sum(P + N)``. Each
    evaluation is one pass over ``X`` for the scores and one for the
    gradient, in ``X``'s dtype; only the iterate is float64. Tens of
    iterations replace FISTA's hundreds on weakly regularised problems.
    Returns ``(W, c, n_iter, converged)``; the caller goes on with FISTA where
    the line search stalls first (float32 losses are inexact near the optimum).
    """
    B, K, _ = W.shape
    dtype = W.dtype
    n_w = W.size
    split = bool(np.any(l1))
    w_rows = np.broadcast_to(w_samples, (B, w_samples.shape[1]))
    l1_w = np.broadcast_to(l1[:, None, None], W.shape).ravel().astype(np.float64)

    def unpack(theta):
        Wm = theta[:n_w] - theta[n_w:2 * n_w] if split else theta[:n_w]
        cm = theta[-c.size:]
        return Wm.reshape(W.shape).astype(dtype), cm.reshape(c.shape).astype(dtype)

    def fun(theta):
        Wm, cm = unpack(theta)
        z = scores(Wm, cm)  # (n, B, K)
        if K == 1:
            per = np.logaddexp(0, z[:, :, 0]) - onehot[:, None, 0] * z[:, :, 0]
        else:
            per = logsumexp(z, axis=2) - np.einsum("nk,nbk->nb", onehot, z)
        loss = np.einsum("nb,bn->", per, w_rows, dtype=np.float64)
        loss += np.dot(l2, np.einsum("bkd,bkd->b", Wm, Wm, dtype=np.float64)) / 2
        if V is not None:
            P = Wm @ V.T
            loss += np.dot(sub, np.einsum("bkj,bkj->b", P, P, dtype=np.float64))
        gW, gc = smooth_grad(Wm, cm, z)
        gW = gW.ravel().astype(np.float64)
        if not split:
            return float(loss), np.concatenate([gW, gc.ravel()])
        loss += np.dot(l1_w, theta[:2 * n_w].reshape(2, -1).sum(0))
        return float(loss), np.concatenate([gW + l1_w, l1_w - gW, gc.ravel()])

    if split:
        w0 = W.ravel().astype(np.float64)
        theta0 = np.concatenate([np.maximum(w0, 0), np.maximum(-w0, 0), c.ravel()])
        bounds = [(0, None)] * (2 * n_w) + [(None, None)] * c.size
    else:
        theta0, bounds = np.concatenate([W.ravel(), c.ravel()]).astype(np.float64), None
    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter, "gtol": tol, "maxcor": 20,
                            "ftol": 1000 * np.finfo(np.float64).eps})
    W, c = unpack(res.x)
    gW, gc = smooth_grad(W, c)
    # Optimality residual: the gradient, or for L1 the distance of -gradient to
    # l1 * subdifferential of |w| (zero at the optimum, FISTA's residual there).
    lam = l1[:, None, None]
    gW = np.where(W != 0, gW + lam * np.sign(W), np.maximum(np.abs(gW) - lam, 0))
    residual = np.maximum(np.abs(gW).max(axis=(1, 2)), np.abs(gc).max(axis=1))
    return W, c, max(int(res.nit), 1), residual <= tol


def standardize_stats(X):
    """Mean and standard deviation per column (zero std mapped to 1), in X's dtype.

    Accumulated in float64 so float32 embeddings of large sets keep their precision.
    """
    mean = X.mean(axis=0, dtype=np.float64)
    var = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], 65536):  # bounded temporary, no full copy
        block = X[start:start + 65536] - mean
        var += np.einsum("ij,ij->j", block, block)
    std = np.sqrt(var / X.shape[0])
    std[std == 0] = 1.0
    return mean.astype(X.dtype), std.astype(X.dtype)


def log_loss_per_problem(X, y, n_classes, coef, intercept):
    """Mean log loss of each of the B heads (used in tests)."""
    z = np.einsum("nd,bkd->nbk", X, coef) + intercept[None]
    if coef.shape[1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=2)
    return -log_softmax(z, axis=2)[np.arange(len(y)), :, y].mean(axis=0)
