"""The batched logistic solver against scikit-learn's solvers."""

import warnings

import numpy as np
import pytest
import sklearn
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression

import sklearn_spur._core._logistic as solver
from sklearn_spur._core.solver import fit_logistic, standardize_stats

# scikit-learn 1.8 deprecated `penalty`; before it, `l1_ratio` alone is ignored.
_NEW_API = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)
L1 = {"l1_ratio": 1.0} if _NEW_API else {"penalty": "l1"}


def _problem(n_classes, n=1500, d=20, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d)
    score = X @ rng.normal(size=d) / np.sqrt(d) + rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X.astype(dtype), y


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("C", [1.0, 0.05])
def test_l2_matches_lbfgs(n_classes, C):
    X, y = _problem(n_classes)
    mean, scale = standardize_stats(X)
    Xs = (X - mean) / scale
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(Xs, y)
    fit = fit_logistic(X, y, n_classes, l2=1 / (C * len(y)), mean=mean, scale=scale,
                       tol=1e-7, max_iter=20000)
    assert fit.converged.all()
    coef_std = fit.coef[0] * scale
    ref_coef = ref.coef_ if n_classes > 2 else ref.coef_[:1]
    if n_classes > 2:  # multinomial logits are defined up to a shift; sklearn centres them
        coef_std = coef_std - coef_std.mean(0)
    np.testing.assert_allclose(coef_std, ref_coef, atol=2e-4)


@pytest.mark.parametrize("C", [1.0, 0.1, 0.01])
def test_l1_matches_saga_and_batches(C):
    X, y = _problem(2)
    mean, scale = standardize_stats(X)
    Xs = (X - mean) / scale
    rng = np.random.default_rng(1)
    weights = (rng.random((3, len(y))) < 0.6).astype(float)
    fit = fit_logistic(X, y, 2, weights=weights, l1=1 / (C * weights.sum(1)),
                       mean=mean, scale=scale, tol=1e-7, max_iter=20000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(3):
            m = weights[b] > 0
            ref = LogisticRegression(C=C, solver="saga", tol=1e-9, max_iter=20000,
                                     **L1).fit(Xs[m], y[m])
            np.testing.assert_allclose(fit.coef[b, 0] * scale, ref.coef_[0], atol=1e-3)
            # the same sparsity pattern, up to coefficients at the threshold
            assert abs((fit.coef[b, 0] != 0).sum() - (ref.coef_ != 0).sum()) <= 1


def test_float32_stays_float32_and_matches_float64():
    X, y = _problem(3)
    f64 = fit_logistic(X, y, 3, l2=1e-3, tol=1e-6)
    f32 = fit_logistic(X.astype(np.float32), y, 3, l2=1e-3, tol=1e-5)
    assert f32.coef.dtype == np.float32 and f32.intercept.dtype == np.float32
    np.testing.assert_allclose(f32.coef, f64.coef, atol=5e-3)


def test_warm_start_from_solution_stops_at_once():
    X, y = _problem(2)
    fit = fit_logistic(X, y, 2, l2=1e-2, tol=1e-6)
    again = fit_logistic(X, y, 2, l2=1e-2, tol=1e-6, coef_init=fit.coef[0],
                         intercept_init=fit.intercept[0])
    assert again.n_iter <= 3 < fit.n_iter


def test_subspace_penalty_shrinks_weights_along_v():
    X, y = _problem(2)
    v = np.zeros((1, X.shape[1]))
    v[0, :3] = 1 / np.sqrt(3)
    free = fit_logistic(X, y, 2, l2=1e-3)
    held = fit_logistic(X, y, 2, l2=1e-3, subspace=v, subspace_penalty=100.0)
    assert abs(held.coef[0, 0] @ v[0]) < 0.02 * abs(free.coef[0, 0] @ v[0])


def test_x_is_not_modified():
    X, y = _problem(2, dtype=np.float32)
    before = X.copy()
    mean, scale = standardize_stats(X)
    fit_logistic(X, y, 2, l1=1e-3, mean=mean, scale=scale)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("penalty, dtype", [("l2", np.float32), ("l2", np.float64),
                                            ("l1", np.float64)])
def test_lbfgs_and_fista_give_the_same_heads(penalty, n_classes, dtype, monkeypatch):
    # Raw embedding-like features: low rank plus noise, unstandardised: ill-conditioned.
    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(size=(1500, 5)) @ rng.normal(size=(5, 40))
                   + 0.1 * rng.normal(size=(1500, 40)), 0).astype(dtype)
    y = np.digitize(X @ rng.normal(size=40) + rng.normal(size=1500),
                    np.quantile(X @ rng.normal(size=40), [0.4, 0.7][:n_classes - 1]))
    weights = rng.uniform(0.2, 1, (3, len(y)))  # B = 3 problems
    kw = {"weights": weights, penalty: np.array([1e-2, 1e-3, 1e-4]), "tol": 1e-5,
          "max_iter": 20000}
    quasi_newton = fit_logistic(X, y, n_classes, **kw)
    monkeypatch.setattr(solver, "_lbfgs", lambda obj, l1w, W, c, *a: (W, c, 0,
                                                                 np.zeros(3, bool)))
    first_order = fit_logistic(X, y, n_classes, **kw)
    assert quasi_newton.converged.all() and first_order.converged.all()
    assert quasi_newton.coef.dtype == dtype
    # measured: L2 184-414 L-BFGS iterations against 2128-2744 of FISTA, L1 579-1198
    # against 5065-7575
    assert quasi_newton.n_iter * 4 < first_order.n_iter, (quasi_newton.n_iter,
                                                          first_order.n_iter)

    def objective(fit):
        z = np.einsum("nd,bkd->nbk", X.astype(np.float64), fit.coef) + fit.intercept
        if n_classes == 2:
            z = np.concatenate([np.zeros_like(z), z], axis=2)
        loss = -log_softmax(z, axis=2)[np.arange(len(y)), :, y].T  # (B, n)
        penalty_value = (kw["l2"] / 2 * (fit.coef ** 2).sum(axis=(1, 2)) if "l2" in kw
                         else kw["l1"] * np.abs(fit.coef).sum(axis=(1, 2)))
        return (weights * loss).sum(1) / weights.sum(1) + penalty_value

    # Same optimum (weights may differ along flat directions): L-BFGS's objective is
    # at most FISTA's (measured: up to 1.2e-7 above it, as both stop at `tol` on
    # the rescaled weights), which stops up to 2.3e-5 above it at this tolerance.
    f_qn, f_fo = objective(quasi_newton), objective(first_order)
    assert np.all(f_qn <= f_fo + 5e-7) and np.all(f_fo - f_qn < 5e-5), (f_qn, f_fo)


def test_a_stalled_lbfgs_is_finished_by_fista(monkeypatch):
    X, y = _problem(2)
    kw = dict(l2=1e-3, tol=1e-6, max_iter=20000)
    reference = fit_logistic(X, y, 2, **kw)
    real = solver.minimize
    monkeypatch.setattr(solver, "minimize", lambda *a, **k: real(
        *a, **{**k, "options": {**k["options"], "maxiter": 3}}))
    finished = fit_logistic(X, y, 2, **kw)
    assert finished.converged.all() and finished.n_iter > 3
    np.testing.assert_allclose(finished.coef, reference.coef, atol=1e-3)


def test_wide_path_with_a_near_constant_column_stays_finite():
    # n < d (the Gram path) with one column of rounding noise (std ~1e-33): its
    # scale 1 / std squared overflowed float32 when folding back (MiniLM case)
    from sklearn_spur._core.solver import fit_logistic, standardize_stats

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 120)).astype(np.float32)
    X[:, 7] = (rng.normal(size=40) * 1e-33).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    mean, scale = standardize_stats(X)
    fit = fit_logistic(X, y, 2, l2=0.05, mean=mean, scale=scale, tol=1e-5)
    assert np.all(np.isfinite(fit.coef)) and np.all(np.isfinite(fit.intercept))
    pred = (X @ fit.coef[0, 0] + fit.intercept[0, 0] > 0).astype(int)
    assert (pred == y).mean() > 0.9
