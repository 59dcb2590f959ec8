"""Adversarial audit of the group metrics, the scorer and group validation.

Every case ends either in the correct value (checked against a brute-force
computation over Python dicts) or in a clear error that names the argument.
``AUDIT`` is the table counted in issue 14's closing note.
"""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_spur.metrics import (
    group_report,
    make_worst_group_scorer,
    worst_class_accuracy,
    worst_group_accuracy,
    worst_group_scorer,
)

pd = pytest.importorskip("pandas")


def _brute_wga(y, p, s):
    y, p, s = (np.asarray(a, dtype=object) for a in (y, p, s))
    rows = [tuple(r) if np.ndim(r) else r for r in s.tolist()]
    hits = {}
    for yi, pi, si in zip(y.tolist(), p.tolist(), rows):
        hits.setdefault((yi, si), []).append(yi == pi)
    return min(np.mean(v) for v in hits.values())


Y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
P = np.array([0, 1, 1, 1, 0, 0, 1, 0])
S = np.array([0, 1, 0, 1, 1, 0, 1, 0])
N = len(Y)


def ok(y, p, s, **kw):
    """An accepted case: the metric must equal the brute-force value."""
    return ("ok", (y, p, s, kw))


def bad(exc, match, y, p, s, **kw):
    """A refused case: ``exc`` with a message matching ``match``."""
    return ("bad", (exc, match, y, p, s, kw))


def warns(match, y, p, s, **kw):
    """Accepted with a warning that says what is special."""
    return ("warn", (match, y, p, s, kw))


_obj = np.array
AUDIT = {
    # label types and orders
    "int": ok(Y, P, S),
    "str-labels": ok(Y.astype(str), P.astype(str), S),
    "reversed-order": ok(Y[::-1], P[::-1], S[::-1]),
    "negative-ints": ok(Y - 5, P - 5, S - 9),
    "bool-y-bool-pred": ok(Y.astype(bool), P.astype(bool), S.astype(bool)),
    "bool-y-int-pred": ok(Y.astype(bool), P, S),
    "int-y-whole-float-pred": ok(Y, P.astype(np.float32), S),
    "int8-vs-int64": ok(Y.astype(np.int8), P.astype(np.int64), S.astype(np.uint8)),
    "uint-vs-int": ok(Y.astype(np.uint16), P, S),
    "huge-ints": ok(Y + 2**62, P + 2**62, S),
    "object-ints-vs-ints": ok(Y.astype(object), P, S.astype(object)),
    "U1-vs-object-str": ok(Y.astype("U1"), P.astype(str).astype(object), S),
    "lists": ok(Y.tolist(), P.tolist(), S.tolist()),
    "str-spurious-values": ok(Y, P, np.where(S, "water", "land")),
    "datetime-spurious": ok(Y, P, np.where(S, np.datetime64("2020-01-01"),
                                           np.datetime64("2021-01-01"))),
    "readonly": ok(*(np.frombuffer(a.tobytes(), a.dtype) for a in (Y, P, S))),
    "int-vs-str": bad(ValueError, "`y_true` holds numeric labels but `y_pred` holds "
                      "string", Y, P.astype(str), S),
    "str-vs-bytes": bad(ValueError, "holds string labels but `y_pred` holds bytes",
                        Y.astype(str), P.astype(bytes), S),
    "bool-vs-str": bad(ValueError, "`y_pred` holds string", Y.astype(bool),
                       P.astype(bool).astype(str), S),
    "mixed-y": bad(ValueError, "`y_true` mixes label types", _obj([0, "a"] * 4, object),
                   P, S),
    "mixed-pred": bad(ValueError, "`y_pred` mixes label types",
                      Y, _obj([0, "a"] * 4, object), S),
    "mixed-spurious": bad(ValueError, "`spurious` mixes label types", Y, P,
                          _obj([0, "a"] * 4, object)),
    "probabilities-as-pred": bad(ValueError, "`y_pred` holds floats that are not whole"
                                 ".*estimator.predict", Y, P * 0.9 + 0.05, S),
    "fractional-y": bad(ValueError, "`y_true` holds floats", Y / 2, P / 2, S),
    "complex-y": bad(ValueError, "`y_true` must hold discrete labels", Y + 1j, P, S),
    "nested-y": bad(ValueError, "`y_true` must hold one label per sample",
                    _obj([(0, 1)] * N + [0], object)[:N], P, S),
    # pandas
    "series-shuffled-index": ok(pd.Series(Y, index=np.arange(N)[::-1]),
                                pd.Series(P, index=np.arange(N) * 3), pd.Series(S)),
    "categorical-spurious": ok(Y, P, pd.Categorical(np.where(S, "b", "a"))),
    "categorical-y": ok(pd.Categorical(Y.astype(str)), P.astype(str), S),
    "string-dtype": ok(pd.Series(Y.astype(str), dtype="string"), P.astype(str), S),
    "nullable-int": ok(pd.Series(Y, dtype="Int64"), P, pd.Series(S, dtype="Int64")),
    "bool-series-spurious": ok(Y, P, pd.Series(S.astype(bool))),
    "dataframe-2col": ok(Y, P, pd.DataFrame({"bg": np.where(S, "w", "l"),
                                             "tex": np.arange(N) % 2})),
    "categorical-nan": bad(ValueError, "`spurious` contains NaN or None", Y, P,
                           pd.Categorical(["a", None] * 4)),
    "nullable-NA-y": bad(ValueError, "`y_true` contains NaN or None",
                         pd.Series([0, 1, None, 1, 0, 1, 1, 0], dtype="Int64"), P, S),
    "NaT-spurious": bad(ValueError, "`spurious` contains NaN or None", Y, P,
                        pd.Series([pd.NaT] + [pd.Timestamp(0)] * (N - 1))),
    # None and NaN
    "none-in-y": bad(ValueError, "`y_true` contains NaN or None", _obj(
        [None] + Y[1:].tolist(), object), P, S),
    "none-in-pred": bad(ValueError, "`y_pred` contains NaN or None", Y, _obj(
        [None] + P[1:].tolist(), object), S),
    "none-in-spurious": bad(ValueError, "`spurious` contains NaN or None.*index 3",
                            Y, P, _obj(["a", "b", "a", None] * 2, object)),
    "all-none-spurious": bad(ValueError, "`spurious` contains NaN", Y, P, [None] * N),
    "nan-in-str-y": bad(ValueError, "`y_true` contains NaN", _obj(
        ["a", np.nan] * 4, object), P.astype(str), S),
    "inf-spurious": bad(ValueError, "`spurious` contains infinity", Y, P,
                        np.where(S, np.inf, 0.0)),
    "spurious-None": bad(InvalidParameterError, "'spurious' parameter", Y, P, None),
    # 2-D spurious
    "2d-one-column": ok(Y, P, S[:, None]),
    "2d-two-columns": ok(Y, P, np.c_[S, np.arange(N) % 2]),
    "2d-nan-in-column": bad(ValueError, r"`spurious\[:, 1\]` contains NaN", Y, P,
                            np.c_[S, np.where(S, np.nan, 1.0)]),
    "2d-zero-columns": bad(ValueError, "1-D .* or 2-D", Y, P, np.empty((N, 0))),
    "3d-spurious": bad(ValueError, "1-D .* or 2-D", Y, P, S[:, None, None]),
    "2d-y": bad(ValueError, "must be 1-D", Y[:, None], P[:, None], S),
    # empty, one sample, lengths
    "empty": bad(ValueError, "y_true is empty", [], [], []),
    "one-sample-right": ok([1], [1], [0]),
    "one-sample-wrong": warns("never predicted", [1], [0], [0]),
    "short-spurious": bad(ValueError, "`spurious` has 7 rows", Y, P, S[:-1]),
    "short-pred": bad(ValueError, "equal length", Y, P[:-1], S),
    # missing groups and classes
    "one-group-only": ok(np.zeros(N, int), P * 0, np.zeros(N, int)),
    "missing-group": warns(r"1 group\(s\) have no samples", [0, 0, 1], [0, 0, 1],
                           [0, 1, 0]),
    "missing-group-raise": bad(ValueError, "missing='raise'", [0, 0, 1], [0, 0, 1],
                               [0, 1, 0], missing="raise"),
    "class-never-predicted": warns(r"\[1\] of y_true are never predicted", Y, Y * 0, S),
    "class-not-in-classes": warns(r"\[1\] of y_true are not among", Y, Y * 0, S,
                                  classes=[0]),
    "class-absent-from-split": warns(r"no samples.*\(2, 0\)", Y, P, S,
                                     classes=[0, 1, 2]),
    "classes-of-other-type": bad(ValueError, "`classes` holds string", Y, P, S,
                                 classes=["0", "1"]),
    "encoding-shift": warns("different encodings", Y, P + 1, S),
    # continuous or ID-like attributes
    "normal-spurious": bad(ValueError, "`spurious` holds floats that are not whole",
                           np.arange(300) % 2, np.arange(300) % 2,
                           np.random.default_rng(0).normal(size=300)),
    "id-spurious": bad(ValueError, "300 distinct values for 300 samples",
                       np.arange(300) % 2, np.arange(300) % 2, np.arange(300)),
    "unique-strings-spurious": bad(ValueError, "distinct values", np.arange(60) % 2,
                                   np.arange(60) % 2, [f"img{i}.png" for i in range(60)]),
    "whole-float-spurious": ok(Y, P, S.astype(np.float64)),
    "complex-spurious": bad(ValueError, "`spurious` must hold discrete", Y, P, S + 0j),
    # keywords
    "groups-keyword": bad(TypeError, "not `groups=`", Y, P, S, groups=S),
    "unknown-keyword": bad(TypeError, "unexpected keyword argument.*'sample_weight'",
                           Y, P, S, sample_weight=np.ones(N)),
    "bad-missing": bad(InvalidParameterError, "'missing' parameter", Y, P, S,
                       missing="drop"),
}


def _call(y, p, s, kw):
    return worst_group_accuracy(y, p, **({} if s is None and "groups" in kw
                                         else {"spurious": s}), **kw)


@pytest.mark.parametrize("case", list(AUDIT))
def test_audit_case(case):
    kind, args = AUDIT[case]
    if kind == "ok":
        y, p, s, kw = args
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # accepted means no warning either
            wga = _call(y, p, s, kw)
            report = group_report(y, p, spurious=s, **kw)
        assert wga == pytest.approx(_brute_wga(y, p, s))
        assert report.mean_accuracy == pytest.approx(
            np.mean(np.asarray(y, object) == np.asarray(p, object)))
    elif kind == "warn":
        match, y, p, s, kw = args
        with pytest.warns(UserWarning, match=match):
            wga = _call(y, p, s, kw)
        assert wga == pytest.approx(_brute_wga(y, p, s))
    else:
        exc, match, y, p, s, kw = args
        with pytest.raises(exc, match=match):
            _call(y, p, s, kw)


def test_audit_counts():
    kinds = [k for k, _ in AUDIT.values()]
    # tried / refused clearly / accepted correctly (with or without a warning)
    assert (len(kinds), kinds.count("bad"), kinds.count("ok") + kinds.count("warn")) \
        == (len(AUDIT), 36, len(AUDIT) - 36)


SCORER_CASES = {
    "fitted-on-str": (lambda X, y, s: (LogisticRegression().fit(X, y.astype(str)), y),
                      ValueError, "`y_pred` holds string"),
    "unseen-label": (lambda X, y, s: (LogisticRegression().fit(X, y), np.r_[7, y[1:]]),
                     UserWarning, r"\[7\] of y_true are not among"),
    "sample-weight": (lambda X, y, s: (LogisticRegression().fit(X, y), y),
                      TypeError, "unexpected keyword argument.*'sample_weight'"),
}


@pytest.mark.parametrize("case", list(SCORER_CASES))
def test_scorer_audit(case):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    s = (np.arange(40) // 2) % 2
    X = np.c_[y + rng.normal(size=40), s]
    make, exc, match = SCORER_CASES[case]
    est, y_eval = make(X, y, s)
    kw = {"sample_weight": np.ones(40)} if case == "sample-weight" else {}
    if issubclass(exc, Warning):
        with pytest.warns(exc, match=match):
            make_worst_group_scorer(missing="ignore")(est, X, y_eval, spurious=s)
    else:
        with pytest.raises(exc, match=match):
            worst_group_scorer(est, X, y_eval, spurious=s, **kw)


def test_worst_class_accuracy_refuses_nan():
    with pytest.raises(ValueError, match="`y_true` contains NaN"):
        worst_class_accuracy([0.0, np.nan], [0.0, 1.0])
