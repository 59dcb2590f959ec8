"""Property-based tests (hypothesis) of the group metrics and the concept projection.

Random shapes, dtypes and label types (integers, strings, booleans, floats):
worst-group accuracy must equal the brute-force minimum over present groups and
ignore sample order and label names; SpuriousProbe's projection must be the
identity at strength 0, idempotent at strength 1, affine in X and linear in the
strength.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklearn_spur import SpuriousProbe
from sklearn_spur.metrics import group_report, worst_group_accuracy

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

LABEL_KINDS = {
    "int": lambda k: np.arange(k) * 3 - 2,
    "str": lambda k: np.array([f"g{i}" for i in range(k)]),
    "bool": lambda k: np.array([False, True])[:k],
    # whole floats: fractional ones are refused as continuous (test_metrics_trust)
    "float": lambda k: np.arange(k) * 2.0 - 1.0,
    "object": lambda k: np.array([f"o{i}" for i in range(k)], dtype=object),
}


@st.composite
def labelled(draw):
    """(y_true, y_pred, spurious) with label types and groups drawn at random."""
    n = draw(st.integers(1, 120))
    n_classes = draw(st.integers(1, 4))
    n_values = draw(st.integers(1, 3))
    y_kind = draw(st.sampled_from(sorted(LABEL_KINDS)))
    s_kind = draw(st.sampled_from(sorted(LABEL_KINDS)))
    if "bool" in (y_kind,):
        n_classes = min(n_classes, 2)
    if s_kind == "bool":
        n_values = min(n_values, 2)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y_idx = rng.integers(0, n_classes, n)
    # predictions: right with a random per-sample probability, else any class
    p_right = draw(st.floats(0, 1))
    pred_idx = np.where(rng.random(n) < p_right, y_idx, rng.integers(0, n_classes, n))
    s_idx = rng.integers(0, n_values, n)
    two_cols = draw(st.booleans())
    classes = LABEL_KINDS[y_kind](n_classes)
    values = LABEL_KINDS[s_kind](n_values)
    s = values[s_idx]
    if two_cols:
        s = np.stack([s, values[rng.integers(0, n_values, n)]], axis=1)
    return classes[y_idx], classes[pred_idx], s, (y_idx, pred_idx, s_idx if not two_cols
                                                  else None)


def _brute_force(y, p, s):
    s_rows = [tuple(r) if np.ndim(r) else (r,) for r in s.tolist()]
    groups = {}
    for yi, pi, si in zip(y.tolist(), p.tolist(), s_rows):
        groups.setdefault((yi, si), []).append(yi == pi)
    return min(np.mean(v) for v in groups.values()), groups


@SETTINGS
@given(labelled())
def test_worst_group_accuracy_is_the_minimum_over_present_groups(data):
    y, p, s, _ = data
    expected, groups = _brute_force(y, p, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # absent groups are reported
        report = group_report(y, p, spurious=s)
        wga = worst_group_accuracy(y, p, spurious=s)
    assert wga == pytest.approx(expected, abs=1e-12)
    assert report.worst_group_accuracy == wga
    assert 0.0 <= wga <= report.mean_accuracy + 1e-12
    assert report.mean_accuracy == pytest.approx(np.mean(y == p))
    assert int(report.counts.sum()) == len(y)
    present = report.counts > 0
    assert int(present.sum()) == len(groups)
    assert np.isnan(report.accuracies[~present]).all()
    assert len(report.missing_groups) == int((~present).sum())


@SETTINGS
@given(labelled(), st.integers(0, 2**31 - 1))
def test_group_metrics_ignore_order_and_label_names(data, seed):
    y, p, s, (y_idx, p_idx, s_idx) = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wga = worst_group_accuracy(y, p, spurious=s)
        perm = np.random.default_rng(seed).permutation(len(y))
        assert worst_group_accuracy(y[perm], p[perm], spurious=s[perm]) == wga
        if s_idx is not None:
            # the same partition, other label types: the metric does not change
            assert worst_group_accuracy(y_idx, p_idx, spurious=s_idx) == wga
            renamed = np.array([f"v{v}" for v in s_idx])
            assert worst_group_accuracy(y_idx.astype(float), p_idx.astype(float),
                                        spurious=renamed) == wga


@SETTINGS
@given(labelled())
def test_perfect_predictions_have_wga_one(data):
    y, _, s, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert worst_group_accuracy(y, y, spurious=s) == 1.0


@SETTINGS
@given(labelled())
def test_adjusted_accuracy_with_own_shares_is_the_mean_accuracy(data):
    """Weighting group accuracies by the split's own group shares gives back the
    plain accuracy; equal shares give the mean of the group accuracies."""
    y, p, s, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = group_report(y, p, spurious=s, weights=(y, s))
        present = [g for g, n in zip(report.groups, report.counts) if n]
        equal = group_report(y, p, spurious=s, weights=dict.fromkeys(present, 1.0))
    assert report.adjusted_accuracy == pytest.approx(report.mean_accuracy, abs=1e-12)
    assert equal.adjusted_accuracy == pytest.approx(
        np.nanmean(report.accuracies), abs=1e-12)


# ------------------------------------------------------------------ projection
@st.composite
def probe_problem(draw):
    n = draw(st.integers(12, 80))
    d = draw(st.integers(2, 12))
    n_values = draw(st.integers(2, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kind = draw(st.sampled_from(["int", "str", "float", "object"]))
    with_y = draw(st.booleans())
    reference = draw(st.sampled_from(["absent", "mean", "zero"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # every value appears at least twice (a direction needs both sides)
    s_idx = np.r_[np.repeat(np.arange(n_values), 2),
                  rng.integers(0, n_values, n - 2 * n_values)]
    rng.shuffle(s_idx)
    shift = rng.normal(0, 2, (n_values, d))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
    X = (scale * (rng.normal(size=(n, d)) + shift[s_idx])).astype(dtype)
    y = None
    if with_y:
        # both classes, and every value in... some class: keep the direction estimable
        y = np.arange(n) % 2
    return X, y, LABEL_KINDS[kind](n_values)[s_idx], reference, rng


def _tol(X):
    eps = np.finfo(X.dtype).eps
    return {"rtol": 2e3 * eps, "atol": 2e3 * eps * max(1.0, float(np.abs(X).max()))}


def _fit_probe(X, y, s, reference, strength=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        probe = SpuriousProbe(reference=reference, strength=strength)
        return probe.fit(X, y, spurious=s)


@SETTINGS
@given(probe_problem())
def test_projection_identity_idempotent_and_dtype(problem):
    X, y, s, reference, _ = problem
    full = _fit_probe(X, y, s, reference, strength=1.0)
    assert full.directions_.shape[0] >= 1
    # strength 0: exactly the input
    none = _fit_probe(X, y, s, reference, strength=0.0)
    X0 = none.transform(X)
    assert X0.dtype == X.dtype
    np.testing.assert_array_equal(X0, X)
    # strength 1: idempotent, and every concept score lands on the reference
    X1 = full.transform(X)
    assert X1.dtype == X.dtype
    np.testing.assert_allclose(full.transform(X1), X1, **_tol(X))
    U = full.directions_.astype(np.float64)
    np.testing.assert_allclose(X1.astype(np.float64) @ U.T,
                               np.broadcast_to(full.reference_, (len(X), len(U))),
                               **_tol(X))
    # nothing orthogonal to the directions moves
    P = np.eye(X.shape[1]) - U.T @ U
    np.testing.assert_allclose(X1 @ P, X @ P, **_tol(X))


@SETTINGS
@given(probe_problem(), st.floats(-3, 3), st.floats(0, 1))
def test_projection_is_affine_in_X_and_linear_in_strength(problem, a, strength):
    X, y, s, reference, rng = problem
    probe = _fit_probe(X, y, s, reference, strength=strength)
    X2 = rng.permutation(X)
    T = probe.transform
    a = X.dtype.type(a)
    mix = a * X + (1 - a) * X2
    # affine maps keep affine combinations
    np.testing.assert_allclose(T(mix), a * T(X) + (1 - a) * T(X2), **_tol(mix))
    if reference == "zero":  # then it is linear
        np.testing.assert_allclose(T(a * X), a * T(X), **_tol(X))
        np.testing.assert_allclose(T(X + X2), T(X) + T(X2), **_tol(X))
    # the strength moves each sample along a straight line from X to the full removal
    full = _fit_probe(X, y, s, reference, strength=1.0)
    step = X.dtype.type(strength) * (full.transform(X) - X)
    np.testing.assert_allclose(T(X), X + step, **_tol(X))
