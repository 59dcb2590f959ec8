"""SpuriousProbe, audited adversarially (issue 14): every dtype, shapes, constant
columns, rare groups, odd attributes, DataFrames, parameters changed after fit,
extreme magnitudes, NaN. Each case ends in a right answer or a clear error."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_spur import SpuriousProbe, to_torch
from sklearn_spur.exceptions import MissingSpuriousError


# ------------------------------------------------------------- adversarial audit
# Every case ends in a correct result (a check of the answer) or a clear error
# that names the argument; (name, call, expected) with expected an exception
# (type, message pattern) or a checking function of the result.
def _audit_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 2, n)
    X = np.c_[2 * y + rng.normal(0, .7, n), 2 * s + rng.normal(0, .5, n),
              rng.normal(size=(n, 4))]
    return X, y, s


def _finds_axis1(p):
    return abs(p.directions_[0, 1]) > 0.95


def _removes(X, y, s, **kw):
    # one C for the classifier directions (no inner CV): the CV path is tested
    # above, here only the input is unusual
    p = SpuriousProbe(Cs=[1.0], **kw).fit(X, y, spurious=s)
    Z = p.transform(X)
    assert np.isfinite(Z).all()
    return p, np.abs(Z @ p.directions_.T.astype(Z.dtype) - p.reference_).max()


def _fitted(**kw):
    X, y, s = _audit_data()
    return SpuriousProbe(**kw).fit(X, y, spurious=s), X


def _after_fit(**params):
    p, X = _fitted()
    return p.set_params(**params).transform(X)


def _acts(**params):
    """Concept scores after changing ``params`` post fit, before, and the reference."""
    p, X = _fitted()
    before = X @ p.directions_.T
    p.set_params(**params)
    return p.transform(X) @ p.directions_.T, before, p.reference_


def _df(X, dtype=None):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    return frame if dtype is None else frame.astype(dtype)


_X, _y, _s = _audit_data()
_n = len(_y)
_one = np.zeros(_n, int)
_one[np.flatnonzero(_y == 0)[0]] = 1  # a single sample in group (0, 1)
_const = _X.copy()
_const[:, 3] = 5.0
_rng = np.random.default_rng(1)
_wide = _rng.normal(size=(20, 100)), _rng.integers(0, 2, 20), np.r_[[0, 1] * 10]
_nan = _X.copy()
_nan[0, 0] = np.nan
_head = (np.array([[1.0, 2.0, 0, 0, 0, 0]]), np.array([-3.0]))
_INVALID = "InvalidParameterError"

AUDIT = [
    # dtypes: float32/float64 kept, float16 -> float32, integers/bool -> float64
    ("float16", lambda: SpuriousProbe().fit(_X.astype(np.float16), _y, spurious=_s)
     .transform(_X.astype(np.float16)).dtype, lambda r: r == np.float32),
    ("float32", lambda: SpuriousProbe().fit(_X.astype(np.float32), _y, spurious=_s)
     .transform(_X.astype(np.float32)).dtype, lambda r: r == np.float32),
    ("float64", lambda: SpuriousProbe().fit(_X, _y, spurious=_s).transform(_X).dtype,
     lambda r: r == np.float64),
    ("int64", lambda: SpuriousProbe().fit((10 * _X).astype(np.int64), _y, spurious=_s),
     lambda p: p.directions_.dtype == np.float64 and _finds_axis1(p)),
    ("uint8", lambda: SpuriousProbe().fit((10 * _X - (10 * _X).min()).astype(np.uint8),
                                          _y, spurious=_s), _finds_axis1),
    ("longdouble", lambda: SpuriousProbe().fit(_X.astype(np.longdouble), _y,
                                               spurious=_s).directions_.dtype,
     lambda r: r == np.float64),
    ("complex", lambda: SpuriousProbe().fit(_X.astype(np.complex64), _y, spurious=_s),
     (ValueError, "real-valued embeddings X")),
    ("bool, no signal", lambda: SpuriousProbe().fit(np.ones_like(_X, bool), _y,
                                                    spurious=_s),
     (ValueError, "concept direction is zero")),
    ("fit float32, transform float16", lambda: SpuriousProbe().fit(
        _X.astype(np.float32), _y, spurious=_s).transform(_X.astype(np.float16)).dtype,
     lambda r: r == np.float32),
    # shapes
    ("n < d pattern", lambda: SpuriousProbe().fit(*_wide[:2], spurious=_wide[2])
     .directions_.shape, lambda r: r == (1, 100)),
    ("n < d svm", lambda: SpuriousProbe("svm", Cs=[1.0]).fit(
        *_wide[:2], spurious=_wide[2]).directions_.shape, lambda r: r == (1, 100)),
    ("n < d lasso, all shrunk", lambda: SpuriousProbe("lasso", Cs=[1e-3]).fit(
        *_wide[:2], spurious=_wide[2]), (ValueError, "larger `Cs`")),
    ("1 sample", lambda: SpuriousProbe().fit(_X[:1], _y[:1], spurious=_s[:1]),
     (ValueError, "at least 2 samples")),
    ("1-D X", lambda: SpuriousProbe().fit(_X[:, 0], _y, spurious=_s),
     (ValueError, "X must be 2-D")),
    ("3-D X", lambda: SpuriousProbe().fit(_X[:, :, None], _y, spurious=_s),
     (ValueError, "X must be 2-D")),
    ("sparse X", lambda: SpuriousProbe().fit(__import__("scipy.sparse").sparse
                                             .csr_matrix(_X), _y, spurious=_s),
     (TypeError, "dense data is required")),
    ("transform wrong width", lambda: _fitted()[0].transform(_X[:, :3]),
     (ValueError, "expecting 6 features")),
    ("transform before fit", lambda: SpuriousProbe().transform(_X),
     (sklearn.exceptions.NotFittedError, "not fitted")),
    # constant columns, rare groups
    *[(f"constant column {d}", lambda d=d: _removes(_const, _y, _s, direction=d,
                                                    random_state=0)[1],
       lambda r: r < 1e-8) for d in ("pattern", "svm", "logistic", "ridge", "lasso")],
    ("all columns constant", lambda: SpuriousProbe().fit(np.ones((_n, 3)), _y,
                                                         spurious=_s),
     (ValueError, "concept direction is zero")),
    *[(f"one sample of a group {d}", lambda d=d: SpuriousProbe(d, Cs=[1.0])
       .fit(_X, _y, spurious=_one).directions_.shape, lambda r: r == (1, 6))
      for d in ("pattern", "svm", "logistic")],
    # the spurious attribute
    ("spurious one value", lambda: SpuriousProbe().fit(_X, _y, spurious=_one * 0)
     .transform(_X), lambda r: np.array_equal(r, _X)),
    ("spurious 2-D", lambda: SpuriousProbe().fit(_X, _y, spurious=np.c_[_s, 1 - _s])
     .concepts_, lambda r: r == [(0, 1), (1, 1)]),
    ("spurious 2-D one column", lambda: SpuriousProbe().fit(_X, _y,
                                                            spurious=_s[:, None]),
     _finds_axis1),
    ("spurious 2-D, a constant column", lambda: SpuriousProbe().fit(
        _X, _y, spurious=np.c_[_s, _one * 0]).concepts_, lambda r: r == [(0, 1)]),
    ("spurious 3-D", lambda: SpuriousProbe().fit(_X, _y, spurious=_s[:, None, None]),
     (ValueError, "`spurious` must be 1-D")),
    ("spurious continuous", lambda: SpuriousProbe().fit(
        _X, _y, spurious=_rng.normal(size=_n)), (ValueError, "looks continuous|not whole numbers")),
    ("spurious identifiers", lambda: SpuriousProbe().fit(_X, _y,
                                                         spurious=np.arange(_n)),
     (ValueError, "looks continuous|not whole numbers|not a grouping")),
    ("spurious NaN", lambda: SpuriousProbe().fit(_X, _y, spurious=np.where(
        _s, np.nan, 0.0)), (ValueError, "`spurious` contains NaN")),
    ("spurious wrong length", lambda: SpuriousProbe().fit(_X, _y, spurious=_s[:-1]),
     (ValueError, "`spurious` has 299 rows")),
    ("spurious strings", lambda: SpuriousProbe().fit(_X, _y, spurious=np.where(
        _s, "red", "blue")).concepts_, lambda r: r == ["red"]),
    ("concept not a value", lambda: SpuriousProbe(concept=7).fit(_X, _y, spurious=_s),
     (ValueError, "concept=7 is not a value")),
    # labels y
    ("y NaN", lambda: SpuriousProbe().fit(_X, np.where(_y, np.nan, 0.0), spurious=_s),
     (ValueError, "y contains NaN")),
    ("y mixed types", lambda: SpuriousProbe().fit(
        _X, np.array([1, "a"] * (_n // 2), dtype=object), spurious=_s),
     (ValueError, "`y` mixes label types")),
    ("y continuous", lambda: SpuriousProbe().fit(_X, _rng.normal(size=_n), spurious=_s),
     (ValueError, "Unknown label type")),
    ("y one class", lambda: SpuriousProbe().fit(_X, _y * 0, spurious=_s), _finds_axis1),
    # DataFrames in and out
    ("DataFrame feature names", lambda: list(SpuriousProbe().fit(
        _df(_X), _y, spurious=_s).get_feature_names_out()),
     lambda r: r == [f"f{i}" for i in range(6)]),
    ("DataFrame out", lambda: SpuriousProbe().set_output(transform="pandas").fit(
        _df(_X), _y, spurious=_s).transform(_df(_X)),
     lambda r: list(r.columns) == [f"f{i}" for i in range(6)]),
    ("DataFrame fit_transform out", lambda: SpuriousProbe().set_output(
        transform="pandas").fit_transform(_df(_X), _y, spurious=_s),
     lambda r: r.shape == _X.shape and hasattr(r, "columns")),
    ("DataFrame float16", lambda: SpuriousProbe().fit(
        _df(_X, np.float16), _y, spurious=_s).directions_.dtype,
     lambda r: r == np.float32),
    # parameters changed after fit: checked where they act
    ("strength=-3 after fit", lambda: _after_fit(strength=-3), (InvalidParameterError, "strength")),
    ("strength=nan after fit", lambda: _after_fit(strength=np.nan),
     (InvalidParameterError, "strength")),
    ("strength=1.5 after fit", lambda: _after_fit(strength=1.5),
     (InvalidParameterError, "strength")),
    ("reference=nan after fit", lambda: _after_fit(reference=np.nan),
     (ValueError, "reference must be finite")),
    ("reference=inf after fit", lambda: _after_fit(reference=np.inf),
     (ValueError, "reference must be finite")),
    ("reference wrong length after fit", lambda: _after_fit(reference=[1.0, 2.0]),
     (ValueError, "reference has 2 values")),
    ("reference='bogus' after fit", lambda: _after_fit(reference="bogus"),
     (InvalidParameterError, "reference")),
    ("pooling='bad' after fit", lambda: _after_fit(pooling="bad"),
     (InvalidParameterError, "pooling")),
    ("direction='foo' after fit", lambda: _after_fit(direction="foo"),
     (InvalidParameterError, "direction")),
    ("cv=1 after fit", lambda: _after_fit(cv=1), (InvalidParameterError, "'cv'")),
    ("reference='zero' after fit acts", lambda: _acts(reference="zero"),
     lambda r: np.abs(r[0]).max() < 1e-9),
    ("strength=0.5 after fit acts", lambda: _acts(strength=0.5),
     lambda r: np.allclose(r[0], (r[1] + r[2]) / 2)),
    ("strength=5 after fit, export", lambda: to_torch(make_pipeline(
        FrozenEstimator(_fitted()[0].set_params(strength=5)), LogisticRegression())
        .fit(_X, _y)), (InvalidParameterError, "strength")),
    ("reference nan at fit", lambda: SpuriousProbe(reference=np.nan).fit(
        _X, _y, spurious=_s), (ValueError, "reference must be finite")),
    *[(f"Cs={c} at fit", lambda c=c: SpuriousProbe("logistic", Cs=c).fit(
        _X, _y, spurious=_s), (ValueError, "Cs must hold positive finite"))
      for c in ([np.nan], [], [-1.0], [np.inf])],
    # magnitudes
    *[(f"scale {k:g} {dt.__name__} {d}", lambda k=k, dt=dt, d=d: _removes(
        (_X * k).astype(dt), _y, _s, direction=d, random_state=0),
       lambda r, k=k, dt=dt: _finds_axis1(r[0]) and r[1] < 1e3 * np.finfo(dt).eps * k)
      for k in (1e-10, 1e10, 1e30) for dt in (np.float32, np.float64)
      for d in ("pattern", "logistic")],
    ("float32 near its maximum", lambda: SpuriousProbe().fit(
        (_X * 1e37).astype(np.float32), _y, spurious=_s),
     (ValueError, "too large for their dtype")),
    ("transform overflows float32", lambda: SpuriousProbe().fit(
        np.c_[_X, _X[:, 1]], _y, spurious=_s).transform(
        np.full((2, 7), 3e38, np.float32)), (ValueError, "overflows float32")),
    ("NaN in X at fit", lambda: SpuriousProbe().fit(_nan, _y, spurious=_s),
     (ValueError, "Input X contains NaN")),
    ("NaN in X at transform", lambda: _fitted()[0].transform(_nan),
     (ValueError, "Input X contains NaN")),
    ("inf in X", lambda: SpuriousProbe().fit(np.where(np.isnan(_nan), np.inf, _nan),
                                             _y, spurious=_s),
     (ValueError, "infinity")),
    # annotation-free mode and diagnostics
    ("no spurious, no head", lambda: SpuriousProbe().fit(_X, _y),
     (MissingSpuriousError, "head=")),
    ("annotation-free without y", lambda: SpuriousProbe(head=_head).fit(_X),
     (ValueError, "needs the class labels y")),
    ("annotation-free head too narrow", lambda: SpuriousProbe(
        head=(np.ones((1, 3)), np.zeros(1))).fit(_X, _y), (ValueError, "takes 3")),
    ("annotation-free classes unknown", lambda: SpuriousProbe(
        head=(*_head, ["a", "b"])).fit(_X, _y), (ValueError, "no output for")),
    ("annotation-free unsorted classes", lambda: SpuriousProbe(
        head=(-_head[0], -_head[1], [1, 0])).fit(_X, _y),
     lambda p: abs(p.concept_directions_[0, 1]) > 0.5),
    ("annotation-free 1e10", lambda: SpuriousProbe(
        head=(_head[0], _head[1] * 1e10)).fit(_X * 1e10, _y),
     lambda p: abs(p.concept_directions_[0, 1]) > 0.5),
    ("annotation-free perfect head", lambda: SpuriousProbe(
        head=(np.array([[1e3, 0, 0, 0, 0, 0]]), np.array([-500.0]))).fit(
        np.c_[_y, _X[:, 1:]].astype(float), _y), (ValueError, "makes no mistake")),
    ("separability, unknown values", lambda: _fitted()[0].separability(_X, _s + 5, _y),
     (ValueError, "values the probe was fitted on")),
    ("separability, wrong length", lambda: _fitted()[0].separability(_X, _s[:-1], _y),
     (ValueError, "`spurious` has 299 rows")),
    ("head_sensitivity, wrong width", lambda: _fitted()[0].head_sensitivity(
        (np.ones((2, 3)), np.zeros(2))), (ValueError, "takes 3 features")),
]


@pytest.mark.parametrize("call, expected", [c[1:] for c in AUDIT],
                         ids=[c[0] for c in AUDIT])
def test_adversarial_inputs_give_a_right_answer_or_a_clear_error(call, expected):
    if isinstance(expected, tuple):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with pytest.raises(expected[0], match=expected[1]):
                call()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = call()
        assert expected(result)


def test_parameters_set_after_fit_are_checked_where_they_act():
    p, X = _fitted()
    for bad in ({"strength": -3}, {"strength": np.nan}, {"pooling": "bad"}):
        with pytest.raises(InvalidParameterError, match=next(iter(bad))):
            p.set_params(**bad).transform(X)
        p.set_params(strength=1.0, pooling="mean")
    # reference acts at transform time; reference_ follows it
    r_absent = p.reference_.copy()
    assert np.allclose(p.set_params(reference="mean").reference_,
                       X.mean(0) @ p.directions_.T)
    assert not np.allclose(p.reference_, r_absent)
    assert np.allclose(p.set_params(reference="absent").reference_, r_absent)
