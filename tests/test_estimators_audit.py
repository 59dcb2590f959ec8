"""Adversarial audit of every classifier of the registry (issue 14, "then audit it").

Each case ends in a correct result or a clear error that names the argument.
The estimators come from the registry, so a new method is audited unasked.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_spur.utils.discovery import all_estimators, requirements

N, D = 240, 6
RNG = np.random.default_rng(0)
Y = np.repeat([0, 1], N // 2)
S = np.where(RNG.random(N) < 0.8, Y, 1 - Y)
X = np.maximum(np.c_[Y + RNG.normal(0, .7, N), S + RNG.normal(0, .3, N),
                     RNG.normal(size=(N, D - 2))], 0).astype(np.float32) + 0.01
HEAD = (np.array([[1.0, 1.5, 0, 0, 0, 0]], np.float32), np.array([-1.2], np.float32))

SCALES = {"X-1e10": np.float32(1e10), "X-1e-10": np.float32(1e-10),
          "X-mixed-scales": np.float32([1e8, 1, 1e-6, 1, 1, 1])}
def _constructible(cls):
    """Classifiers whose every parameter has a default (RRClArCNet needs its head)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters.values()
    return all(p.default is not p.empty for p in params
               if p.name != "self" and p.kind is not p.VAR_KEYWORD)


CLASSIFIERS = [(n, c) for n, c in all_estimators("classifier") if _constructible(c)]


def _make(cls, **extra):
    needs = requirements(cls)
    params = dict(extra)
    if needs["head"] == "required" and "head" not in params:
        params["head"] = HEAD
    if "random_state" in cls().get_params():
        params.setdefault("random_state", 0)
    if "n_fits" in cls().get_params():
        params.setdefault("n_fits", 2)
    return cls(**params)


def _fit(est, X, y, s=S):
    needs = requirements(est)
    kwargs = {} if needs["group_labels"] == "none" or s is None else {"spurious": s}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(X, y, **kwargs)


def _needs_spurious(cls):
    return requirements(cls)["group_labels"] == "required" or (
        requirements(cls)["group_labels"] == "optional"
        and not requirements(cls)["label_free"])


# (case id, transform of (X, y, s), expected: "ok" or (exception, message regex))
def _labels(kind):
    # "dog" > "cat": class 1 stays the head's positive class
    return {"str": np.where(Y == 1, "dog", "cat"), "bool": Y.astype(bool),
            "gapped": np.where(Y == 1, 7, -3), "float": Y.astype(float),
            "object": np.where(Y == 1, "b", "a").astype(object)}[kind]


CASES = {
    "labels-str": (lambda: (X, _labels("str"), S), "ok"),
    "labels-bool": (lambda: (X, _labels("bool"), S), "ok"),
    "labels-gapped-negative": (lambda: (X, _labels("gapped"), S), "ok"),
    "labels-integral-float": (lambda: (X, _labels("float"), S), "ok"),
    "labels-object": (lambda: (X, _labels("object"), S), "ok"),
    "labels-continuous": (lambda: (X, RNG.normal(size=N), S),
                          (ValueError, "continuous|Unknown label type|label")),
    "labels-one-class": (lambda: (X, np.zeros(N, int), S), (ValueError, "class")),
    "labels-nan": (lambda: (X, np.where(np.arange(N) == 3, np.nan, Y), S),
                   (ValueError, "NaN|nan|y")),
    "X-float16": (lambda: (X.astype(np.float16), Y, S), "ok"),
    "X-float64": (lambda: (X.astype(np.float64), Y, S), "ok"),
    "X-int": (lambda: (np.rint(X * 10).astype(int), Y, S), "ok"),
    "X-1e10": (lambda: (X * np.float32(1e10), Y, S), "ok"),
    "X-1e-10": (lambda: (X * np.float32(1e-10), Y, S), "ok"),
    "X-mixed-scales": (lambda: (X * np.float32([1e8, 1, 1e-6, 1, 1, 1]), Y, S), "ok"),
    "X-nan": (lambda: (np.where(np.arange(N)[:, None] == 5, np.nan, X), Y, S),
              (ValueError, "NaN|nan|X")),
    "X-inf": (lambda: (np.where(np.arange(N)[:, None] == 5, np.inf, X), Y, S),
              (ValueError, "inf|X")),
    "X-sparse": (lambda: (sp.csr_matrix(X), Y, S), (TypeError, "sparse|dense")),
    "X-3d": (lambda: (X.reshape(N, 2, 3), Y, S), (ValueError, "2-D|X")),
    "X-dataframe": (lambda: (pd.DataFrame(X, columns=[f"u{i}" for i in range(D)]), Y, S),
                    "ok"),
    "X-wide-n<d": (lambda: (np.c_[X, RNG.random((N, 300)).astype(np.float32)][:40],
                            Y[::6], S[::6]), "ok"),
    "X-constant-column": (lambda: (np.c_[X, np.ones(N, np.float32)], Y, S), "ok"),
    "y-length": (lambda: (X, Y[:-1], S), (ValueError, "samples|length|inconsistent")),
    "spurious-length": (lambda: (X, Y, S[:-1]), (ValueError, "spurious")),
    "spurious-continuous": (lambda: (X, Y, RNG.normal(size=N)), (ValueError, "spurious")),
    "spurious-str": (lambda: (X, Y, np.where(S == 1, "water", "land")), "ok"),
}


def _applies(cls, case):
    if case.startswith("spurious") and not _needs_spurious(cls):
        return False  # the attribute is optional or unused there: covered elsewhere
    if case == "X-wide-n<d" and requirements(cls)["head"] == "required":
        return False  # the head's width is fixed (covered by the width check)
    return True


PARAMS = [(n, c, case) for n, c in CLASSIFIERS for case in CASES if _applies(c, case)]


@pytest.mark.parametrize("name,cls,case", PARAMS,
                         ids=[f"{n}-{c}" for n, _, c in PARAMS])
def test_case(name, cls, case):
    make, expected = CASES[case]
    Xc, yc, sc = make()
    est = _make(cls)
    if requirements(cls)["head"] == "required":
        # the head must match the data: its width, its classes, its scale
        W, b = HEAD
        if case == "X-constant-column":
            W = np.c_[W, [[0.0]]]
        if case in SCALES:
            W = W / SCALES[case]
        classes = np.unique(yc) if case.startswith("labels-") and expected == "ok" else None
        est = _make(cls, head=(W, b) if classes is None else (W, b, classes))
    if expected == "ok":
        _fit(est, Xc, yc, sc)
        pred = est.predict(Xc)
        assert set(np.unique(pred)) <= set(np.unique(yc).tolist())
        assert list(est.classes_) == sorted(np.unique(yc).tolist())
        coef = getattr(est, "coef_", None)
        if coef is not None:
            assert np.all(np.isfinite(coef)), case
            if np.asarray(Xc).dtype == np.float16:
                assert coef.dtype == np.float32
        unpenalised_scale = case == "X-1e-10" and "standardize" not in est.get_params()
        if case in ("X-1e10", "X-1e-10", "X-mixed-scales", "labels-str") and not (
                unpenalised_scale):
            # (at 1e-10 without standardisation, the L2 penalty 1 / (C n) on raw
            # weights of order 1e10 rightly dominates: the optimum is near constant)
            # a scale change must not break the fit: as accurate as on X itself
            # (with the hyperparameters the estimator selected: the selection on
            # held-out halves of 240 samples is a separate, noisier matter)
            chosen = {k: v for k, v in getattr(est, "best_params_", {}).items()
                      if k in est.get_params()}
            ref = _fit(_make(cls, **chosen), X, Y, S).score(X, Y)
            # AFR's pull lam * ||W - W_head||^2 acts on raw weights (the paper's
            # form): at 1e10 it vanishes, and at the gamma=4 its selection picks
            # on this toy the unpulled optimum is 0.08 less accurate.
            tol = 0.10 if (name, case) == ("AFRClassifier", "X-1e10") else 0.05
            assert est.score(Xc, yc) >= ref - tol, (case, est.score(Xc, yc), ref)
        return
    exc, pattern = expected
    with pytest.raises(exc) as info:
        _fit(est, Xc, yc, sc)
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.mark.parametrize("name,cls", CLASSIFIERS)
def test_groups_keyword_is_explained(name, cls):
    with pytest.raises(TypeError, match="spurious"):
        _make(cls).fit(X, Y, groups=S)


@pytest.mark.parametrize("name,cls", CLASSIFIERS)
def test_unfitted_and_width_mismatch(name, cls):
    est = _make(cls)
    with pytest.raises(NotFittedError):
        est.predict(X)
    _fit(est, X, Y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :4])


@pytest.mark.parametrize("name,cls", CLASSIFIERS)
def test_parameters_changed_after_fit_do_not_leak_into_predict(name, cls):
    est = _fit(_make(cls), X, Y)
    before = est.decision_function(X)
    params = clone(est).get_params()
    changed = {k: v for k, v in {"C": 1e-3, "max_iter": 1, "tol": 0.5, "lam": 50.0,
                                 "gamma": 9.0, "upweight": 99.0, "n_fits": 1,
                                 "threshold": 9.0}.items() if k in params}
    est.set_params(**changed)
    np.testing.assert_array_equal(est.decision_function(X), before)


@pytest.mark.parametrize("name,cls", CLASSIFIERS)
def test_inputs_are_not_mutated(name, cls):
    Xc, yc, sc = X.copy(), Y.copy(), S.copy()
    _fit(_make(cls), Xc, yc, sc).predict(Xc)
    np.testing.assert_array_equal(Xc, X)
    np.testing.assert_array_equal(yc, Y)
    np.testing.assert_array_equal(sc, S)


def test_count():
    """The audit's size (reported in the closing note)."""
    n = len(PARAMS) + 4 * len(CLASSIFIERS)
    refused = sum(1 for _, _, case in PARAMS if CASES[case][1] != "ok") + 2 * len(
        CLASSIFIERS)
    assert n > 150 and refused > 40
