"""The batched logistic solver against scikit-learn's solvers."""

import warnings

import numpy as np
import pytest
import sklearn
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import sklearn_spur._core._logistic as solver
import sklearn_spur._core._wide as wide
import sklearn_spur._core.solver as solver_module
from sklearn_spur._core.solver import check_convergence, fit_logistic, standardize_stats

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
@pytest.mark.parametrize("penalty, dtype", [("l2", np.float32), ("l1", np.float64)])
def test_lbfgs_and_fista_give_the_same_heads(penalty, n_classes, dtype, monkeypatch):
    # Raw embedding-like features: low rank plus noise, unstandardised: ill-conditioned.
    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(size=(600, 5)) @ rng.normal(size=(5, 40))
                   + 0.1 * rng.normal(size=(600, 40)), 0).astype(dtype)
    y = np.digitize(X @ rng.normal(size=40) + rng.normal(size=600),
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
    # measured (columns rescaled by the solver): L2 239-402 L-BFGS iterations against
    # 2011-3255 of FISTA, L1 478-1510 against 4786-6883
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
    kw = {"l2": 1e-3, "tol": 1e-6, "max_iter": 20000}
    reference = fit_logistic(X, y, 2, **kw)
    real = solver.minimize
    monkeypatch.setattr(solver, "minimize", lambda *a, **k: real(
        *a, **{**k, "options": {**k["options"], "maxiter": 3}}))
    finished = fit_logistic(X, y, 2, **kw)
    assert finished.converged.all() and finished.n_iter > 3
    np.testing.assert_allclose(finished.coef, reference.coef, atol=1e-3)


# --- the anchored L2 term (AFR), against a direct minimisation -----------------------

def _direct(X, y, K, w, l2, anchor, scale):
    """scipy's L-BFGS-B on the documented objective, in float64, raw space."""
    from scipy.optimize import minimize

    d = X.shape[1]
    onehot = np.eye(max(K, 2))[y][:, -K:] if K > 1 else (y == 1)[:, None] * 1.0
    w = w / w.sum()

    # Variables: the weights in the space where the penalty is isotropic (better
    # conditioned), on centred X; mapped back to raw weights at the end.
    t, mean = (scale if anchor is None else np.ones(d)), X.mean(0)
    Xs = (X - mean) / t

    def f(theta):
        W, c = theta[:K * d].reshape(K, d) / t, theta[K * d:]
        z = Xs @ (W * t).T + c
        if K == 1:
            per = np.logaddexp(0, z[:, 0]) - onehot[:, 0] * z[:, 0]
            r = (1 / (1 + np.exp(-z)) - onehot) * w[:, None]
        else:
            lse = np.logaddexp.reduce(z, axis=1)
            per = lse - (onehot * z).sum(1)
            r = (np.exp(z - lse[:, None]) - onehot) * w[:, None]
        if anchor is None:  # standardised-space weights W * scale
            dev, grad_pen = W * scale, l2 * W * scale ** 2
        else:  # raw-space weights
            dev, grad_pen = W - anchor, l2 * (W - anchor)
        val = w @ per + l2 / 2 * (dev ** 2).sum()
        return val, np.concatenate([(r.T @ Xs + grad_pen / t).ravel(), r.sum(0)])

    res = minimize(f, np.zeros(K * d + K), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
    W = res.x[:K * d].reshape(K, d) / t
    return W, res.x[K * d:] - W @ mean


@pytest.mark.parametrize("n, d", [(120, 6), (15, 30)])  # primal and Gram paths
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("anchored", [True, False])
def test_anchor_penalty_matches_direct_minimisation(n, d, n_classes, anchored):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, d)) * rng.uniform(0.3, 4, d) + rng.normal(size=d)
    y = rng.integers(0, n_classes, n)
    K = 1 if n_classes == 2 else n_classes
    mean, scale = standardize_stats(X)
    weights = rng.uniform(0.2, 1, (2, n))
    l2 = np.array([0.3, 0.05])
    anchors = rng.normal(size=(2, K, d)) / scale if anchored else None
    fit = fit_logistic(X, y, n_classes, weights=weights, l2=l2, mean=mean, scale=scale,
                       l2_anchor=anchors, tol=1e-10, max_iter=10000)
    assert fit.converged.all()
    for b in range(2):
        coef, icpt = _direct(X, y, K, weights[b], l2[b],
                             None if anchors is None else anchors[b], scale)
        np.testing.assert_allclose(fit.coef[b], coef, atol=1e-4)
        if K > 1:  # unpenalised multinomial intercepts: defined up to a shift
            icpt = icpt - icpt.mean() + fit.intercept[b].mean()
        np.testing.assert_allclose(fit.intercept[b], icpt, atol=1e-4)


def test_anchor_pulls_toward_the_head_and_zero_anchor_is_raw_ridge():
    X, y = _problem(2, n=300, d=8)
    mean, scale = standardize_stats(X)
    head = fit_logistic(X, y, 2, l2=1e-4).coef[0]
    far = fit_logistic(X[::-1], 1 - y, 2, l2=1e-4).coef[0]  # a different head
    strong = fit_logistic(X, 1 - y, 2, l2=1e4, l2_anchor=head, mean=mean, scale=scale)
    np.testing.assert_allclose(strong.coef[0], head, atol=2e-3 * np.abs(head).max())
    weak = fit_logistic(X, y, 2, l2=1e-4, l2_anchor=far, mean=mean, scale=scale)
    assert np.abs(weak.coef[0] - head).max() < np.abs(far - head).max() / 10
    # A zero anchor with standardisation: ridge on the raw weights, as without it.
    raw = fit_logistic(X, y, 2, l2=0.05, tol=1e-8)
    zero = fit_logistic(X, y, 2, l2=0.05, l2_anchor=np.zeros((1, 8)), mean=mean,
                        scale=scale, tol=1e-8)
    np.testing.assert_allclose(zero.coef, raw.coef, atol=1e-5)


# --- extreme magnitudes --------------------------------------------------------------

def _agreement(fit, X, ref, X_ref):
    z = X.astype(np.float64) @ fit.coef[0].T + fit.intercept[0]
    pred = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(1)
    return (pred == ref.predict(X_ref)).mean()


_RNG = np.random.default_rng(7)
_Z = _RNG.normal(size=(2000, 8))
_Y = (_Z @ _RNG.normal(size=8) + 1.5 * _RNG.normal(size=2000) > 0).astype(int)
_COLS = np.array([1e10, 1e-10] * 4)  # mixed-scale columns


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("magnitude", ["1e10", "1e-10", "mixed"])
def test_extreme_magnitudes_match_sklearn_on_rescaled_data(magnitude, dtype):
    C, n = 0.5, len(_Y)
    factor = _COLS if magnitude == "mixed" else float(magnitude)
    X = (_Z * factor).astype(dtype)
    # Standardised (as DFR, the editor and NeuronTuner fit): sklearn on scaled data.
    mean, scale = standardize_stats(X)
    fit = fit_logistic(X, _Y, 2, l2=1 / (C * n), mean=mean, scale=scale)
    assert fit.converged.all() and np.isfinite(fit.coef).all()
    X_ref = (X.astype(np.float64) - mean) / scale
    ref = LogisticRegression(C=C).fit(X_ref, _Y)
    assert _agreement(fit, X, ref, X_ref) >= 0.99
    # Raw (as ERM fits): the same objective as sklearn on X / factor with C * factor^2
    # (the columns at 1e-10 then weigh nothing: sklearn sees the others only).
    fit = fit_logistic(X, _Y, 2, l2=1 / (C * n))
    assert fit.converged.all() and np.isfinite(fit.coef).all()
    big = np.broadcast_to(factor, 8) >= (1 if magnitude == "mixed" else 0)
    if magnitude == "1e-10":
        # C * 1e-20: the exact optimum is the class prior (sklearn's lbfgs stalls at
        # a zero intercept there), so the reference is the majority class.
        from sklearn.dummy import DummyClassifier

        ref = DummyClassifier().fit(_Z, _Y)
    else:
        ref = LogisticRegression(C=C * np.max(factor) ** 2).fit(_Z[:, big], _Y)
    assert _agreement(fit, X, ref, _Z[:, big]) >= 0.99


def test_non_finite_result_raises_naming_the_magnitude():
    X, y = _problem(2, n=200, d=5, dtype=np.float32)
    X[0, 0] = np.inf
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="largest absolute value in X is inf"):
        fit_logistic(X, y, 2, l2=1e-2)


# --- convergence ---------------------------------------------------------------------

def test_converged_is_false_at_max_iter_and_warns_once():
    X, y = _problem(3, n=300, d=10)
    for kw in ({}, {"l1": 1e-3}):
        fit = fit_logistic(X, y, 3, weights=np.ones((2, 300)), tol=1e-12, max_iter=3,
                           **kw)
        assert fit.n_iter <= 3 and not fit.converged.any()
        with pytest.warns(ConvergenceWarning) as record:
            assert fit.warn_if_not_converged("DFRClassifier", 3, stacklevel=1) is False
        assert len(record) == 1 and record[0].filename == __file__
        message = str(record[0].message)
        assert message.startswith("DFRClassifier: 2 of 2 solver problems")
        assert "max_iter=3" in message and "standardi" in message and "tol" in message
    done = fit_logistic(X, y, 3, l2=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_convergence(done, "ERMClassifier", 2000) is True


# --- dtypes ----------------------------------------------------------------------------

def test_float16_is_fitted_in_float32_and_float32_is_not_copied():
    import tracemalloc

    X, y = _problem(2, n=20000, d=100, dtype=np.float32)
    f16 = fit_logistic(X.astype(np.float16), y, 2, l2=1e-3)
    f32 = fit_logistic(X, y, 2, l2=1e-3)
    assert f16.coef.dtype == np.float32 and f16.intercept.dtype == np.float32
    np.testing.assert_allclose(f16.coef, f32.coef, atol=2e-2)
    assert standardize_stats(X.astype(np.float16))[0].dtype == np.float32
    mean, scale = standardize_stats(X)
    tracemalloc.start()
    fit_logistic(X, y, 2, l2=1e-3, mean=mean, scale=scale)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < X.nbytes / 4, (peak, X.nbytes)


# --- fewer samples than features -----------------------------------------------------

def test_wide_l1_uses_small_working_sets_and_matches_the_full_problem(monkeypatch):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 400))
    y = (X[:, :5].sum(1) + 0.5 * rng.normal(size=30) > 0).astype(int)
    mean, scale = standardize_stats(X)
    weights = (rng.random((3, 30)) < 0.8).astype(float)
    kw = {"weights": weights, "l1": np.array([0.05, 0.02, 0.01]), "mean": mean,
          "scale": scale, "tol": 1e-8, "max_iter": 20000}
    sizes = []
    real = wide.primal
    monkeypatch.setattr(wide, "primal", lambda obj, *a: sizes.append(
        obj.X.shape[1]) or real(obj, *a))
    active = fit_logistic(X, y, 2, **kw)
    assert active.converged.all() and max(sizes) <= 100, sizes
    monkeypatch.setattr(solver_module, "working_set_l1", solver.primal)
    full = fit_logistic(X, y, 2, **kw)
    np.testing.assert_allclose(active.coef, full.coef, atol=1e-4)
    np.testing.assert_allclose(active.intercept, full.intercept, atol=1e-4)


# --- BLAS threads ----------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, None])
def test_blas_threads_are_limited_during_a_fit(threads, monkeypatch):
    from threadpoolctl import threadpool_info

    seen = []
    real = solver.Objective.grad
    monkeypatch.setattr(solver_module, "SOLVER_THREADS", threads)
    monkeypatch.setattr(solver.Objective, "grad", lambda self, *a: seen.append(
        [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        or real(self, *a))
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    X, y = _problem(2, n=200, d=5)
    fit_logistic(X, y, 2, l2=1e-2)
    assert seen[0] == ([1] * len(before) if threads == 1 else before)
    assert [i["num_threads"] for i in threadpool_info()
            if i["user_api"] == "blas"] == before


def test_wide_l2_hidden_columns_and_constant_x():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 60)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    mean, scale = standardize_stats(X)
    scale[:10] = np.inf  # hidden columns (NeuronTuner's masks)
    for anchor in (None, np.ones((1, 60))):
        fit = fit_logistic(X, y, 2, l2=0.1, mean=mean, scale=scale, l2_anchor=anchor)
        assert fit.converged.all() and fit.coef.dtype == np.float32
        assert np.all(fit.coef[0, 0, :10] == 0) and np.all(fit.coef[0, 0, 10:] != 0)
    const = fit_logistic(np.ones((6, 30)), np.array([0, 1, 1, 1, 1, 1]), 2, l2=0.1)
    assert np.all(const.coef == 0)
    np.testing.assert_allclose(const.intercept, [[np.log(5)]], atol=1e-4)


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
