"""The straightforward DFR recipe, one scikit-learn fit at a time (the baseline).

This is the published recipe as the reference code runs it (Kirichenko et al.
2023, ``dfr_evaluate_spurious.py``): tune C with liblinear L1 logistic
regressions on a group-balanced half of the held-out set, scored by worst-group
accuracy on the other half; then average ``coef_``/``intercept_`` of ``n_fits``
liblinear fits, each on a fresh group-balanced subsample of the whole held-out
set, after standardising with the held-out mean and scale. For more than two
classes liblinear refuses (scikit-learn >= 1.8), so the multinomial L1 problem is
solved by saga. ``tests/test_dfr.py`` checks that :class:`sklearn_spur.DFRClassifier`
agrees with it; ``benchmarks/bench_dfr.py`` times both.
"""

import warnings

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


def _l1_logreg(C, n_classes):
    new_api = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)
    solver = "liblinear" if n_classes == 2 else "saga"
    kw = {"l1_ratio": 1.0} if new_api else {"penalty": "l1"}
    return LogisticRegression(C=C, solver=solver, max_iter=1000, **kw)


def _balanced(g, rng):
    idx = [np.flatnonzero(g == k) for k in np.unique(g)]
    m = min(len(i) for i in idx)
    return np.concatenate([rng.choice(i, m, replace=False) for i in idx])


def _wga(y, pred, g):
    return min((pred[g == k] == y[g == k]).mean() for k in np.unique(g))


def dfr_reference(X, y, g, *, C_grid=C_GRID, n_fits=20, C=None, random_state=0):
    """Fit DFR the straightforward way; returns (coef, intercept, scaler, C)."""
    rng = np.random.RandomState(random_state)
    X = np.asarray(X, dtype=np.float64)
    n_classes = len(np.unique(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if C is None:
            idx = rng.permutation(len(X))
            tr, ho = idx[len(X) // 2:], idx[:len(X) // 2]
            tr = tr[_balanced(g[tr], rng)]
            scaler = StandardScaler().fit(X[tr])
            scores = {}
            for c in C_grid:
                lr = _l1_logreg(c, n_classes).fit(scaler.transform(X[tr]), y[tr])
                scores[c] = _wga(y[ho], lr.predict(scaler.transform(X[ho])), g[ho])
            C = max(scores, key=scores.get)
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X)
        coefs, intercepts = [], []
        for _ in range(n_fits):
            sub = _balanced(g, rng)
            lr = _l1_logreg(C, n_classes).fit(Xs[sub], y[sub])
            coefs.append(lr.coef_)
            intercepts.append(lr.intercept_)
    coef, intercept = np.mean(coefs, axis=0), np.mean(intercepts, axis=0)
    return coef, intercept, scaler, C


def predict_reference(model, X, classes):
    coef, intercept, scaler, _ = model
    scores = scaler.transform(np.asarray(X, dtype=np.float64)) @ coef.T + intercept
    idx = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(1)
    return np.asarray(classes)[idx]
