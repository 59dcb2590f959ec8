"""Batched logistic regression for last-layer retraining.

Every method of the package ends by refitting a linear head, often many times
(DFR: 7 regularisation values, then 20 group-balanced subsamples). Fitting them
one at a time with a general-purpose solver repeats the same passes over the
embeddings. :func:`fit_logistic` fits ``B`` problems *at once*: the problems
share ``X`` and differ by their per-sample weights (a subsample is a 0/1 weight
vector), their penalties and their starting point. Each iteration costs two
matrix products of ``X`` with ``B * K`` columns, in ``X``'s dtype (float32
stays float32, float16 is computed in float32); standardisation is applied
implicitly, so ``X`` is never copied.

The problems go to scipy's L-BFGS-B (an L1 penalty made smooth by splitting the
weights into positive and negative parts under bounds), then to FISTA where its
line search stalls (``_logistic.py``). With fewer samples than features the
problems are solved in the span of the samples (L2) or on an active set of
columns (L1) instead (``_wide.py``).

Columns whose magnitude is far from 1 (beyond a factor 256, e.g. embeddings of
magnitude 1e10 or 1e-10, or both in one matrix) are rescaled internally by a
power of two, which is exact in floating point and changes nothing in the
objective; ordinary embeddings are left as they are, so they follow the same
path as before. The FISTA fallback and the Gram path also centre ``X`` (a change
of the unpenalised intercept). The intercept is never penalised (liblinear's
is: the only difference to scikit-learn's
``LogisticRegression(solver="liblinear")``).

BLAS threads are limited to :data:`SOLVER_THREADS` (default 1) during a fit: the
products here are tall and skinny (``X`` times ``B * K`` columns) and memory
bound, and with several threads on a busy machine one DFR fit at 50k x 2048
took 3x the CPU time (``benchmarks/bench_speed.py --threads``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning

from ._logistic import Objective, primal
from ._wide import gram_l2, working_set_l1

__all__ = ["LogisticFit", "check_convergence", "fit_logistic", "standardize_stats"]

#: BLAS threads inside :func:`fit_logistic`: an int limits them (with
#: ``threadpoolctl``) for the duration of a fit, ``None`` leaves BLAS alone. Set
#: by the environment variable ``SKLEARN_SPUR_SOLVER_THREADS`` (an int, or
#: ``default`` for ``None``) or by assigning this attribute.
SOLVER_THREADS = os.environ.get("SKLEARN_SPUR_SOLVER_THREADS", "1").strip()
if SOLVER_THREADS.lower() in ("", "default", "none"):
    SOLVER_THREADS = None
elif SOLVER_THREADS.isdigit() and int(SOLVER_THREADS) > 0:
    SOLVER_THREADS = int(SOLVER_THREADS)
else:
    warnings.warn(f"SKLEARN_SPUR_SOLVER_THREADS={SOLVER_THREADS!r} is neither a "
                  "positive int nor 'default'; using 1.", RuntimeWarning, stacklevel=2)
    SOLVER_THREADS = 1
_controller = None


def _blas_limit():
    global _controller
    if SOLVER_THREADS is None:
        return contextlib.nullcontext()
    if _controller is None:  # scanning the loaded libraries costs milliseconds
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=int(SOLVER_THREADS), user_api="blas")


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
        Whether each problem met ``tol`` within ``max_iter`` iterations.
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: np.ndarray

    def warn_if_not_converged(self, who, max_iter, stacklevel=2):
        """Issue one :class:`~sklearn.exceptions.ConvergenceWarning` if any problem
        did not converge.

        Parameters
        ----------
        who : str
            The estimator's name, first word of the message.
        max_iter : int
            The iteration limit it was fitted with (named in the message).
        stacklevel : int, default=2
            As for :func:`warnings.warn`, counted from the caller of this method:
            1 attributes the warning to the caller's line (and module), 2 to its
            caller's.

        Returns
        -------
        converged : bool
            True when every problem converged (and nothing was warned).
        """
        bad = int(np.size(self.converged) - np.count_nonzero(self.converged))
        if bad == 0:
            return True
        what = "the solver" if np.size(self.converged) == 1 else (
            f"{bad} of {np.size(self.converged)} solver problems")
        warnings.warn(
            f"{who}: {what} did not converge in max_iter={max_iter} iterations. "
            "Raise max_iter, standardise the embeddings (standardize=True or a "
            "StandardScaler), or raise tol.", ConvergenceWarning,
            stacklevel=stacklevel + 1)
        return False


def check_convergence(fit, who, max_iter, stacklevel=2):
    """Warn once if ``fit`` did not converge.

    The same as ``fit.warn_if_not_converged(who, max_iter, stacklevel)``; see
    :meth:`LogisticFit.warn_if_not_converged`.
    """
    return fit.warn_if_not_converged(who, max_iter, stacklevel + 1)


def work_dtype(dtype):
    """The dtype the solver computes in: float32 for float16 and float32, else float64."""
    return np.dtype(np.float32) if dtype in (np.float16, np.float32) else np.dtype(
        np.float64)


def _as_batch(value, B, dtype):
    arr = np.asarray(value, dtype=dtype)
    if arr.size not in (1, B):
        raise ValueError(f"a penalty has {arr.size} values for {B} problems.")
    return np.broadcast_to(arr.reshape(-1), (B,)).copy()


def _column_stats(X, mean, inv_scale, rows=2048, block=256):
    """Over about ``rows`` evenly spaced rows, accumulated in float64 by blocks:
    the column means of ``X`` and the mean squares of ``(x - mean) * inv_scale``."""
    sample = X[::max(1, X.shape[0] // rows)]
    centre = sample.mean(axis=0, dtype=np.float64)
    ms = np.zeros(X.shape[1])
    for start in range(0, sample.shape[0], block):
        part = (sample[start:start + block] - mean) * inv_scale
        ms += np.einsum("ij,ij->j", part, part)
    return centre, ms / sample.shape[0]


#: Columns whose root mean square (with the penalty's curvature) is within a
#: factor ``2 ** _KEEP`` of 1 are not rescaled.
_KEEP = 8


def _column_rescaling(ms, curvature):
    """``rho``: a power of two near ``sqrt(ms + curvature)``, shrunk toward 1.

    Within a factor ``2 ** _KEEP`` of 1 (ordinary embeddings, standardised or
    not, and the sparse units of a subsample), ``rho`` is 1: the solver keeps
    the path it takes on unscaled columns. Beyond, only the excess is removed
    (e.g. ``rho = 2**25`` for a column of magnitude near ``2**33 ~ 1e10``), which
    bounds the conditioning whatever the magnitudes.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.round(np.log2(np.sqrt(ms + curvature)))
    e[~np.isfinite(e)] = 0
    return 2.0 ** (np.sign(e) * np.maximum(np.abs(e) - _KEEP, 0))


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
    l2_anchor=None,
    max_iter=2000,
    tol=1e-4,
    power_iter=15,
):
    """Fit ``B`` penalised logistic regressions on the same embeddings at once.

    For each problem ``b`` it minimises, over ``W`` (K x d) and ``c`` (K,)::

        sum_i w_bi * loss(y_i, W x~_i + c) / sum_i w_bi
            + l1_b * |W|_1 + l2_b / 2 * |W|^2 + sub_b * |W V^T|^2

    with ``x~ = (x - mean) / scale`` (implicit), ``loss`` the binary (``K = 1``)
    or multinomial logistic loss and ``V`` the rows of ``subspace``: the
    penalties act on the standardised-space weights ``W`` (the raw-space weights
    are ``W / scale``). With ``l2_anchor`` the L2 term becomes a pull toward
    the anchor on the *raw-space* weights::

        l2_b / 2 * |W / scale - l2_anchor_b|^2

    (the same as ``l2_b / 2 * |W - l2_anchor_b * scale|^2 / scale^2``; when
    ``scale`` is None the two spaces coincide). ``l2_anchor = 0`` thus gives a
    ridge penalty on the raw-space weights, e.g. of a trained head.

    Parameters
    ----------
    X : ndarray of shape (n, d), float16, float32 or float64
        Embeddings; never modified, and never copied when float32 or float64
        (float16 is computed in float32; other dtypes in float64).
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
        Implicit standardisation of ``X``. An infinite scale hides a column
        (its weight is exactly zero).
    coef_init : ndarray of shape (K, d) or (B, K, d), default=None
        Starting weights in the raw ``X`` space (warm start); zeros by default.
    intercept_init : ndarray of shape (K,) or (B, K), default=None
        Starting intercepts in the raw ``X`` space.
    l2_anchor : ndarray of shape (K, d) or (B, K, d), default=None
        Raw-space weights the L2 term pulls toward (AFR's pull toward the
        original head); ``None`` penalises the standardised weights themselves.
    max_iter : int
        Maximum iterations (summed over the rounds of the active-set path).
    tol : float
        Stop when the optimality residual (the gradient, or for L1 its distance
        to the subdifferential; zero at the optimum) is below ``tol`` in max
        norm for every problem. It is measured on the (standardised) weights,
        except for columns of extreme magnitude (beyond a factor 256 from 1),
        rescaled internally by a power of two toward that range: a tolerance on
        their own weights could not be met in floating point.
    power_iter : int
        Power iterations estimating each problem's Lipschitz constant for the
        FISTA fallback (each costs two passes over ``X``).

    Returns
    -------
    result : LogisticFit

    Raises
    ------
    FloatingPointError
        If the fitted weights are not finite (e.g. ``X`` holds values near the
        largest its dtype can represent); the message gives ``X``'s magnitude.

    Notes
    -----
    With fewer samples than features (``n < d``) an L2 (or anchored) problem
    without ``subspace`` is solved exactly in the span of the samples (an
    ``n x n`` Gram matrix), and an L1 problem on an active set of columns.
    BLAS threads are limited to ``SOLVER_THREADS`` during the fit.
    """
    X = np.asarray(X)
    if X.dtype != work_dtype(X.dtype):  # float16 -> float32, ints -> float64
        X = X.astype(work_dtype(X.dtype))
    with _blas_limit():
        fit = _fit(X, np.asarray(y), n_classes, weights, l1, l2, subspace,
                   subspace_penalty, mean, scale, coef_init, intercept_init, l2_anchor,
                   max_iter, tol, power_iter)
    if not (np.isfinite(fit.coef).all() and np.isfinite(fit.intercept).all()):
        with np.errstate(over="ignore"):
            top = float(np.abs(X).max()) if X.size else 0.0
        raise FloatingPointError(
            f"fit_logistic: the fitted weights are not finite; the largest absolute "
            f"value in X is {top:.3g} ({X.dtype}). Rescale the embeddings (e.g. a "
            "StandardScaler, or standardize=True) or pass them as float64.")
    return fit


def _fit(X, y, n_classes, weights, l1, l2, subspace, sub, mean, scale, coef_init,
         intercept_init, anchor, max_iter, tol, power_iter):
    dtype = X.dtype
    n, d = X.shape
    K = 1 if n_classes == 2 else n_classes
    w_samples = np.ones((1, n), dtype) if weights is None else np.atleast_2d(
        np.asarray(weights, dtype=dtype))
    batch = [np.size(v) for v in (l1, l2, sub)] + [
        np.shape(a)[0] for a in (anchor, coef_init) if a is not None and np.ndim(a) == 3]
    B = max(w_samples.shape[0], *batch)
    if w_samples.shape[0] not in (1, B):
        raise ValueError("weights must have 1 or B rows.")
    w_samples = w_samples / w_samples.sum(axis=1, keepdims=True)  # (B or 1, n)
    l1, l2, sub = (_as_batch(v, B, np.float64) for v in (l1, l2, sub))
    inv_scale = np.ones(d) if scale is None else 1 / np.asarray(scale, np.float64)
    user_mean = mean is not None
    mean = None if mean is None else np.asarray(mean, np.float64)
    onehot = np.zeros((n, K), dtype)
    if K == 1:
        onehot[:, 0] = y == 1
    else:
        onehot[np.arange(n), y] = 1

    # Internal variables W^ = W * rho on x^ = (x - mean) * q, q = inv_scale / rho:
    # rho a power of two near sqrt(E x~^2 + 4 l2 D) beyond a factor 2**_KEEP (the
    # diagonal of the Hessian: curvature of the loss, at most 1/4, and of the
    # penalty), D the metric of the
    # L2 term on the standardised weights (1, or inv_scale^2 for the raw-space
    # anchored term). Only the conditioning changes, not the objective. FISTA and
    # the Gram path also centre X (a change of the unpenalised intercept).
    mean = np.zeros(d) if mean is None else mean
    centre, ms = _column_stats(X, mean, inv_scale)
    if user_mean:
        centre = mean
    metric = np.ones(d) if anchor is None else inv_scale ** 2
    rho = _column_rescaling(ms, 4 * l2.min() * metric)
    q = inv_scale / rho
    l1w = (l1[:, None, None] / rho).astype(dtype)
    l2w = (l2[:, None, None] * metric / rho ** 2).astype(dtype)
    visible = q > 0
    anchor_raw = None
    if anchor is not None:
        anchor_raw = np.broadcast_to(np.asarray(anchor, np.float64), (B, K, d)) * visible
    coef0 = np.zeros((B, K, d)) if coef_init is None else np.broadcast_to(
        np.asarray(coef_init, np.float64), (B, K, d)) * visible
    icpt0 = np.zeros((B, K)) if intercept_init is None else np.broadcast_to(
        np.asarray(intercept_init, np.float64), (B, K))
    mean_w = mean.astype(dtype)

    if n < d and not np.any(l1) and (subspace is None or not np.any(sub)):
        metric_root = inv_scale if anchor is None else visible.astype(np.float64)
        coef, icpt, it, converged = gram_l2(
            X, onehot, w_samples, centre.astype(dtype), metric_root.astype(dtype),
            anchor_raw, l2, coef0, icpt0, max_iter, tol)
        return LogisticFit(coef=coef, intercept=icpt, n_iter=it,
                           converged=converged & np.isfinite(coef).all(axis=(1, 2)))

    # In X's dtype, as the solver always did (rho is a power of two: exact).
    q_w = (np.ones(d, dtype) if scale is None else 1 / np.asarray(scale, dtype)) / (
        rho.astype(dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        to_internal = np.where(visible, 1 / q, 0)
        W = np.where(visible, coef0.astype(dtype) / q_w, 0).astype(dtype)
    V = None if subspace is None else (np.asarray(subspace, np.float64).reshape(-1, d)
                                       / rho).astype(dtype)
    obj = Objective(X, onehot, w_samples, mean_w, q_w, l2w,
                    None if anchor is None else (anchor_raw * to_internal).astype(dtype),
                    V, sub.astype(dtype), centre=centre.astype(dtype))
    c = icpt0.astype(dtype) + np.einsum("bkd,d->bk", W * q_w, mean_w)
    solve = working_set_l1 if n < d and np.any(l1) else primal
    W, c, it, converged = solve(obj, l1w, W, c, max_iter, tol)
    coef = W * obj.q
    intercept = c - np.einsum("bkd,d->bk", coef, mean_w)
    converged = converged & np.isfinite(coef).all(axis=(1, 2))
    return LogisticFit(coef=coef, intercept=intercept, n_iter=it, converged=converged)


def standardize_stats(X):
    """Mean and standard deviation per column (zero std mapped to 1).

    In the solver's dtype (float32 for float16 and float32 ``X``); accumulated in
    float64 so float32 embeddings of large sets keep their precision.
    """
    mean = X.mean(axis=0, dtype=np.float64)
    var = np.zeros(X.shape[1])
    # Blocks of at most ~16 MiB of float64, freed before the next: a bounded
    # temporary, not a copy of X (65536 rows of 2048 float64 were 1 GiB).
    step = max(1, min(65536, (16 << 20) // (8 * max(X.shape[1], 1))))
    for start in range(0, X.shape[0], step):
        block = X[start:start + step] - mean
        var += np.einsum("ij,ij->j", block, block)
        del block
    std = np.sqrt(var / X.shape[0])
    std[std == 0] = 1.0
    dtype = work_dtype(X.dtype)
    return mean.astype(dtype), std.astype(dtype)


def log_loss_per_problem(X, y, n_classes, coef, intercept):
    """Mean log loss of each of the B heads (used in tests)."""
    z = np.einsum("nd,bkd->nbk", X, coef) + intercept[None]
    if coef.shape[1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=2)
    return -log_softmax(z, axis=2)[np.arange(len(y)), :, y].mean(axis=0)
