"""The primal solvers behind :func:`~sklearn_spur._core.solver.fit_logistic`.

:class:`Objective` is the smooth part of ``B`` penalised logistic losses on
implicit features ``x^ = (x - mean) * q`` (``X`` is never copied); the L1 part
is handled by the solvers. ``_lbfgs`` runs scipy's L-BFGS-B (an L1 penalty made
smooth by splitting the weights into positive and negative parts under bounds);
where its line search stalls first (float32 losses are inexact near the
optimum), ``_fista`` (accelerated proximal gradient with adaptive restart,
soft-thresholding for L1) goes on from its point. ``primal`` chains the two.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp, softmax


class Objective:
    """Smooth part of ``B`` logistic objectives sharing ``X``.

    For problem ``b``, over ``W`` (K, d) and ``c`` (K,)::

        sum_i w_bi loss(y_i, W x^_i + c + offset_ib)
            + 1/2 sum_j l2w_bj (W_j - anchor_bj)^2 + sub_b |W V^T|^2

    with ``x^ = (x - mean) * q`` implicit and ``w_b`` summing to one.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    onehot : ndarray of shape (n, K)
    w_samples : ndarray of shape (B or 1, n)
        Normalised sample weights.
    mean, q : ndarray of shape (d,)
    l2w : ndarray of shape (B, 1, d)
        Per-problem, per-column L2 strengths.
    anchor : ndarray of shape (B, K, d) or None
    V : ndarray of shape (k, d) or None
    sub : ndarray of shape (B,)
    offset : ndarray of shape (n, B, K) or None
        Fixed scores added to every problem's (used by the Gram path).
    centre : ndarray of shape (d,) or None
        Column means of ``X``, for :meth:`centred`.
    """

    def __init__(self, X, onehot, w_samples, mean, q, l2w, anchor=None, V=None,
                 sub=None, offset=None, centre=None):
        self.X, self.onehot, self.w = X, onehot, w_samples
        self.mean, self.q, self.l2w = mean, q, l2w
        self.anchor, self.V, self.sub, self.offset = anchor, V, sub, offset
        self.centre = centre
        self.K = onehot.shape[1]
        self.B = max(w_samples.shape[0], l2w.shape[0])

    def _with(self, cols=slice(None), mean=None):
        def pick(a):
            return None if a is None else a[..., cols]

        return Objective(
            self.X if isinstance(cols, slice) else np.ascontiguousarray(self.X[:, cols]),
            self.onehot, self.w, (self.mean if mean is None else mean)[cols],
            self.q[cols], self.l2w[..., cols], pick(self.anchor),
            None if self.V is None else self.V[:, cols], self.sub, self.offset,
            pick(self.centre))

    def restrict(self, cols):
        """The same objective with the weights outside ``cols`` fixed at zero."""
        return self._with(cols)

    def centred(self):
        """The objective on ``X`` centred at ``centre``, and ``shift(W)``: its
        intercepts minus this objective's for the same scores, shape (B, K).

        Only the unpenalised intercept changes meaning; first-order methods are
        slow along the mean of uncentred X, which this removes.
        """
        if self.centre is None:
            return self, lambda W: 0
        delta = self.centre - self.mean
        return self._with(mean=self.centre), lambda W: np.einsum(
            "bkd,d->bk", W * self.q, delta)

    def scores(self, W, c):
        B, K, d = W.shape
        n = self.X.shape[0]
        Wr = W * self.q
        z = (self.X @ Wr.reshape(B * K, d).T).reshape(n, B, K)
        z += c[None] - np.einsum("bkd,d->bk", Wr, self.mean)[None]
        if self.offset is not None:
            z += self.offset
        return z

    def value(self, W, c, z):
        """Sum of the ``B`` objectives, float64."""
        if self.K == 1:
            per = np.logaddexp(0, z[:, :, 0]) - self.onehot[:, None, 0] * z[:, :, 0]
        else:
            per = logsumexp(z, axis=2) - np.einsum("nk,nbk->nb", self.onehot, z)
        w = np.broadcast_to(self.w, (W.shape[0], self.w.shape[1]))
        out = np.einsum("nb,bn->", per, w, dtype=np.float64)
        D = W if self.anchor is None else W - self.anchor
        l2 = self.l2w[:, 0, :1]
        if l2.size and np.all(self.l2w == l2[:, None]):  # one strength per problem
            out += np.dot(l2[:, 0], np.einsum("bkd,bkd->b", D, D, dtype=np.float64)) / 2
        else:
            out += np.einsum("bkd,bkd->", self.l2w * D, D, dtype=np.float64) / 2
        if self.V is not None:
            P = W @ self.V.T
            out += np.dot(self.sub, np.einsum("bkj,bkj->b", P, P, dtype=np.float64))
        return float(out)

    def grad(self, W, c, z=None):
        B, K, d = W.shape
        n = self.X.shape[0]
        z = self.scores(W, c) if z is None else z
        r = expit(z) if K == 1 else softmax(z, axis=2)
        r -= self.onehot[:, None, :]
        r *= self.w.T[:, :, None]
        # X.T @ r, not r.T @ X: OpenBLAS is up to 20x slower on the latter layout.
        g_raw = (self.X.T @ r.reshape(n, B * K)).T.reshape(B, K, d)
        r_sum = r.sum(axis=0)  # (B, K)
        gW = (g_raw - r_sum[:, :, None] * self.mean) * self.q
        gW += self.l2w * (W if self.anchor is None else W - self.anchor)
        if self.V is not None:
            gW += 2 * self.sub[:, None, None] * ((W @ self.V.T) @ self.V)
        return gW, r_sum

    def lipschitz(self, power_iter):
        """Upper estimate of each problem's gradient Lipschitz constant, (B,)."""
        X, q, mean, dtype = self.X, self.q, self.mean, self.X.dtype
        d = X.shape[1]
        B = self.B
        w = np.broadcast_to(self.w, (B, self.w.shape[1]))
        v = np.random.default_rng(0).standard_normal((B, d + 1)).astype(dtype)
        lam = np.ones(B, dtype)
        for _ in range(power_iter):  # on the weighted Gram matrix of [x^, 1]
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            u = X @ (v[:, :d] * q).T + (v[:, d] - (v[:, :d] * q) @ mean)
            u *= w.T
            v_new = np.empty_like(v)
            v_new[:, :d] = ((X.T @ u).T - u.sum(axis=0)[:, None] * mean) * q
            v_new[:, d] = u.sum(axis=0)
            lam = np.linalg.norm(v_new, axis=1)
            v = v_new
        curvature = 0.25 if self.K == 1 else 0.5
        L = 1.3 * curvature * lam + self.l2w.max(axis=(1, 2), initial=0)
        if self.V is not None:
            L = L + 2 * self.sub * np.linalg.norm(self.V, 2) ** 2
        return L + np.finfo(dtype).eps


def residual(obj, l1w, W, c, grad=None):
    """Optimality residual per problem: zero at the optimum, (B,).

    The max norm of the gradient, or for L1 the distance of minus the gradient
    to ``l1w`` times the subdifferential of ``|w|``.
    """
    gW, gc = obj.grad(W, c) if grad is None else grad
    gW = np.where(W != 0, gW + l1w * np.sign(W), np.maximum(np.abs(gW) - l1w, 0))
    return np.maximum(np.abs(gW).max(axis=(1, 2), initial=0), np.abs(gc).max(axis=1))


def primal(obj, l1w, W, c, max_iter, tol, power_iter=15):
    """L-BFGS-B, then FISTA from its point where its line search stalled.

    Returns ``(W, c, n_iter, converged)``.
    """
    W, c, it, converged = _lbfgs(obj, l1w, W, c, max_iter, tol)
    if converged.all() or it >= max_iter:
        return W, c, it, converged
    centred, shift = obj.centred()
    W, c, it, converged = _fista(centred, l1w, W, c + shift(W), it, max_iter, tol,
                                 power_iter)
    return W, c - shift(W), it, converged


def _lbfgs(obj, l1w, W, c, max_iter, tol):
    """Minimise the objectives with scipy's L-BFGS-B.

    The ``B`` problems are independent, so their objectives are summed and
    solved as one; the gradient of the sum with respect to a problem's
    variables is that problem's gradient, so the stopping test (max-norm of
    the gradient at most ``tol``, scikit-learn's lbfgs test on the same
    sample-averaged objective) holds for every problem. An L1 penalty is made
    smooth by splitting ``W = P - N`` with ``P, N >= 0`` (bounds L-BFGS-B
    keeps exactly, so zeros are exact) and ``l1 * sum(P + N)``. Each
    evaluation is one pass over ``X`` for the scores and one for the
    gradient, in ``X``'s dtype; only the iterate is float64.
    """
    dtype = W.dtype
    n_w = W.size
    split = bool(np.any(l1w))
    l1_flat = np.broadcast_to(l1w, W.shape).ravel().astype(np.float64)

    def unpack(theta):
        Wm = theta[:n_w] - theta[n_w:2 * n_w] if split else theta[:n_w]
        cm = theta[-c.size:]
        return Wm.reshape(W.shape).astype(dtype), cm.reshape(c.shape).astype(dtype)

    def fun(theta):
        Wm, cm = unpack(theta)
        z = obj.scores(Wm, cm)
        loss = obj.value(Wm, cm, z)
        gW, gc = obj.grad(Wm, cm, z)
        gW = gW.ravel().astype(np.float64)
        if not split:
            return float(loss), np.concatenate([gW, gc.ravel()])
        loss += np.dot(l1_flat, theta[:2 * n_w].reshape(2, -1).sum(0))
        return float(loss), np.concatenate([gW + l1_flat, l1_flat - gW, gc.ravel()])

    if split:
        w0 = W.ravel().astype(np.float64)
        theta0 = np.concatenate([np.maximum(w0, 0), np.maximum(-w0, 0), c.ravel()])
        bounds = [(0, None)] * (2 * n_w) + [(None, None)] * c.size
    else:
        theta0, bounds = np.concatenate([W.ravel(), c.ravel()]).astype(np.float64), None
    with np.errstate(over="ignore"):  # trial steps may overflow; L-BFGS-B backtracks
        res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": max_iter, "gtol": tol, "maxcor": 20,
                                "ftol": 1000 * np.finfo(np.float64).eps})
    W, c = unpack(res.x)
    return W, c, max(int(res.nit), 1), residual(obj, l1w, W, c) <= tol


def _fista(obj, l1w, W, c, start, max_iter, tol, power_iter):
    """Accelerated proximal gradient with adaptive restart, from ``(W, c)``.

    Its step is ``1 / L`` with ``L`` a power-iteration estimate of each
    problem's Lipschitz constant, inflated by 1.3 to stay above the true value.
    """
    dtype = W.dtype
    step = (1.0 / obj.lipschitz(power_iter)).astype(dtype)[:, None, None]
    thr = step * l1w
    Y_W, Y_c = W.copy(), c.copy()
    t = np.ones(W.shape[0], dtype)
    converged = np.zeros(W.shape[0], bool)
    it = start
    for it in range(start + 1, max_iter + 1):
        gW, gc = obj.grad(Y_W, Y_c)
        W_new = Y_W - step * gW
        W_new = np.sign(W_new) * np.maximum(np.abs(W_new) - thr, 0)
        c_new = Y_c - step[:, :, 0] * gc
        res = np.maximum(np.abs(Y_W - W_new).max(axis=(1, 2), initial=0),
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
    return W, c, it, converged
