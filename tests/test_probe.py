"""SpuriousProbe and RRClArCClassifier: directions, removal, diagnostics, effects."""

import itertools
import warnings

import numpy as np
import pytest
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline

from sklearn_spur import (
    RRClArCClassifier,
    SpuriousProbe,
    to_torch,
    worst_group_accuracy,
    worst_group_scorer,
)
from sklearn_spur._core.heads import as_linear_head, resolve_head
from sklearn_spur._core.solver import fit_logistic
from sklearn_spur.exceptions import MissingSpuriousError


def _toy(n=800, seed=0, agree=0.9, dtype=np.float32, d_noise=6):
    """Class along axis 0, attribute along axis 1 (agreeing with the class `agree`)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < agree, y, 1 - y)
    X = np.c_[2 * y + rng.normal(0, 0.7, n), 2 * s + rng.normal(0, 0.5, n),
              rng.normal(size=(n, d_noise))]
    return X.astype(dtype), y, s


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _wga(b, est, X=None):
    X = b.X_test if X is None else X
    return worst_group_accuracy(b.y_test, est.predict(X), spurious=b.spurious_test)


def _balanced_lr():
    return LogisticRegression(class_weight="balanced", max_iter=5000)


def _removed_then_lr(probe, b):
    """The fitted probe, kept fixed, then a balanced LR refit on the training split."""
    model = make_pipeline(FrozenEstimator(probe), _balanced_lr())
    return model.fit(b.X_train, b.y_train)


# --------------------------------------------------------------------- directions
def test_pattern_is_pooled_within_class_cov_over_var():
    X, y, s = _toy()
    X64 = X.astype(np.float64)
    expected = np.zeros(X.shape[1])
    for c in (0, 1):
        m = y == c
        t = s[m] == 1
        p = t.mean()
        diff = X64[m][t].mean(0) - X64[m][~t].mean(0)
        expected += m.sum() * p * (1 - p) * diff  # = sum_i (t_i - tbar_c) z_i
    probe = SpuriousProbe().fit(X, y, spurious=s)
    np.testing.assert_allclose(probe.concept_directions_[0],
                               expected / np.linalg.norm(expected), atol=1e-5)
    # Across classes it is the plain mean difference.
    pooled = SpuriousProbe(within_class=False).fit(X, y, spurious=s)
    diff = X64[s == 1].mean(0) - X64[s == 0].mean(0)
    np.testing.assert_allclose(pooled.concept_directions_[0],
                               diff / np.linalg.norm(diff), atol=1e-5)
    assert probe.concepts_ == [1]


def test_within_class_keeps_the_class_signal_out():
    X, y, s = _toy(n=3000, agree=0.9)
    within = SpuriousProbe().fit(X, y, spurious=s).concept_directions_[0]
    across = SpuriousProbe(within_class=False).fit(X, y, spurious=s)
    across = across.concept_directions_[0]
    assert abs(within[0]) < 0.05 and within[1] > 0.99
    assert abs(across[0]) > 0.5  # the class axis leaks in when pooled across classes


def test_transform_projection_strength_and_references():
    X, y, s = _toy()
    probe = SpuriousProbe().fit(X, y, spurious=s)
    v, r = probe.directions_[0], probe.reference_[0]
    # reference "absent": mean concept score of the samples without the concept
    assert r == pytest.approx(float((X[s == 0] @ v).mean()), rel=1e-5)
    Xp = probe.transform(X)
    np.testing.assert_allclose(Xp @ v, r, atol=1e-4)
    # only the component along v changes
    delta = X - Xp
    np.testing.assert_allclose(delta - np.outer(delta @ v, v), 0, atol=1e-5)
    half = probe.set_params(strength=0.5).transform(X)
    np.testing.assert_allclose(half @ v, (X @ v + r) / 2, atol=1e-4)
    np.testing.assert_allclose(probe.set_params(strength=0.0).transform(X), X)
    # other references, refit
    for ref, expected in [("zero", 0.0), ("mean", float((X @ v).mean())), (1.5, 1.5)]:
        p = SpuriousProbe(reference=ref).fit(X, y, spurious=s)
        assert p.reference_[0] == pytest.approx(expected, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(p.transform(X) @ v, expected, atol=1e-4)
    with pytest.raises(ValueError, match="reference has 2 values"):
        SpuriousProbe(reference=[0.0, 1.0]).fit(X, y, spurious=s)


def test_several_values_and_attributes_give_orthonormal_directions():
    rng = np.random.default_rng(1)
    n = 1500
    y = rng.integers(0, 2, n)
    s3 = rng.integers(0, 3, n)
    means = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0]])
    X = np.c_[means[s3] + rng.normal(0, .5, (n, 3)), y + rng.normal(0, .5, n),
              rng.normal(size=(n, 4))]
    probe = SpuriousProbe().fit(X, y, spurious=s3)
    assert probe.concepts_ == [0, 1, 2]
    # one-vs-rest mean differences of 3 values span 2 dimensions
    assert probe.directions_.shape == (2, X.shape[1])
    np.testing.assert_allclose(probe.directions_ @ probe.directions_.T, np.eye(2),
                               atol=1e-10)
    assert probe.separability_.min() > 0.95
    # removing them leaves the attribute's means equal
    Xp = probe.transform(X)
    centers = np.array([Xp[s3 == k, :3].mean(0) for k in range(3)])
    assert np.abs(centers - centers.mean(0)).max() < 0.02
    # two binary attributes: one direction each
    s2 = np.c_[s3 == 1, s3 == 2].astype(int)
    two = SpuriousProbe().fit(X, y, spurious=s2)
    assert two.concepts_ == [(0, 1), (1, 1)]
    assert two.directions_.shape == (2, X.shape[1])
    # `concept` picks one value: value 2 against the mean of the others
    one = SpuriousProbe(concept=2).fit(X, y, spurious=s3)
    assert one.concepts_ == [2]
    expected = np.r_[-1.5, 3.0, np.zeros(6)]
    assert _cos(one.concept_directions_[0], expected) > 0.99


def test_span_pooling_keeps_one_direction_per_class():
    rng = np.random.default_rng(2)
    n = 2000
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 2, n)
    # the attribute moves class 0 along axis 1 and class 1 along axis 2
    X = np.c_[y, np.where(y == 0, 2 * s, 0), np.where(y == 1, 2 * s, 0)] \
        + rng.normal(0, .3, (n, 3))
    mean = SpuriousProbe().fit(X, y, spurious=s)
    span = SpuriousProbe(pooling="span").fit(X, y, spurious=s)
    assert mean.directions_.shape[0] == 1
    assert span.concepts_ == [(1, 0), (1, 1)]
    assert span.directions_.shape[0] == 2
    # a linear model still reads the attribute within class after the mean removal
    for probe, lo, hi in [(mean, 0.9, 1.0), (span, 0.0, 0.6)]:
        Z = probe.transform(X)[y == 0]
        p = cross_val_predict(LogisticRegression(), Z, s[y == 0], cv=3,
                              method="decision_function")
        assert lo <= roc_auc_score(s[y == 0], p) <= hi
    # per-class rows are scored within their class
    np.testing.assert_array_less(0.95, span.separability_)


@pytest.mark.parametrize("direction", ["svm", "logistic", "ridge", "lasso"])
def test_classifier_directions_find_the_concept(direction):
    X, y, s = _toy(n=600)
    probe = SpuriousProbe(direction, random_state=0).fit(X, y, spurious=s)
    assert probe.concept_directions_[0, 1] > 0.9
    assert probe.C_[0] in probe.Cs
    assert probe.separability_[0] > 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_pattern_direction_is_closer_to_the_truth_than_svm(seed):
    # The claim of Pahde et al. (and Haufe et al. 2014), on Sagawa et al.'s
    # synthetic recipe: with noise shared by the spurious and noise features, a
    # classifier's weights (a filter) tilt away from the attribute's direction
    # to cancel it; the pattern (mean difference) does not. Without the shared
    # noise both find it.
    from sklearn_spur.datasets import make_spurious_gaussians

    cos = {}
    for corr in (0.0, 0.5):
        d = make_spurious_gaussians(2000, rho=0.9, noise_correlation=corr,
                                    random_state=seed)
        for direction in ("pattern", "svm"):
            probe = SpuriousProbe(direction, random_state=0)
            probe.fit(d.X, d.y, spurious=d.spurious)
            cos[direction, corr] = float(probe.concept_directions_[0]
                                         @ d.spurious_direction)
    assert cos["pattern", 0.0] > 0.99 and cos["svm", 0.0] > 0.98, cos
    assert cos["pattern", 0.5] > 0.99, cos
    assert cos["pattern", 0.5] > cos["svm", 0.5] + 0.05, cos


# ----------------------------------------------------------- conventions, errors
def test_dtypes_are_preserved():
    X, y, s = _toy()
    for dtype in (np.float32, np.float64):
        probe = SpuriousProbe().fit(X.astype(dtype), y, spurious=s)
        assert probe.directions_.dtype == dtype
        assert probe.transform(X.astype(dtype)).dtype == dtype
        assert probe.concept_scores(X.astype(dtype)).dtype == dtype
    rr = RRClArCClassifier(lam=1.0).fit(X, y, spurious=s)
    assert rr.coef_.dtype == np.float32
    # torch tensors are read as numpy arrays (float32 stays float32)
    probe = SpuriousProbe().fit(torch.from_numpy(X), torch.from_numpy(y),
                                spurious=torch.from_numpy(s))
    assert probe.transform(torch.from_numpy(X)).dtype == np.float32
    np.testing.assert_allclose(probe.directions_,
                               SpuriousProbe().fit(X, y, spurious=s).directions_)


def test_missing_spurious_says_how_to_fix_it():
    X, y, _ = _toy()
    with pytest.raises(MissingSpuriousError, match="head="):
        SpuriousProbe().fit(X, y)
    with pytest.raises(ValueError, match="needs the class labels y"):
        SpuriousProbe(head=(np.ones((1, X.shape[1])), np.zeros(1))).fit(X)
    with pytest.raises(MissingSpuriousError, match="FrozenEstimator"):
        RRClArCClassifier().fit(X, y)


def test_constant_and_confounded_attributes_warn():
    X, y, _ = _toy()
    with pytest.warns(UserWarning, match="single value"):
        probe = SpuriousProbe().fit(X, y, spurious=np.zeros(len(y)))
    assert probe.directions_.shape == (0, X.shape[1])
    np.testing.assert_array_equal(probe.transform(X), X)
    with pytest.warns(UserWarning, match="constant within every class"):
        probe = SpuriousProbe().fit(X, y, spurious=y)
    assert abs(probe.concept_directions_[0, 0]) > 0.5  # it is the class direction
    assert probe.separability_[0] > 0.9  # measured across classes then


def test_pipeline_routes_spurious_and_folds_into_one_linear_layer():
    X, y, s = _toy()
    def pipeline():
        return Pipeline([("probe", SpuriousProbe(strength=0.7)),
                         ("lr", LogisticRegression())])

    pipe = pipeline()
    with sklearn.config_context(enable_metadata_routing=True), \
            warnings.catch_warnings():
        # no "fit_transform does not forward" warning from scikit-learn's routing
        # (only UserWarnings: third-party DeprecationWarnings are not ours)
        warnings.simplefilter("error", UserWarning)
        pipe.fit(X, y, spurious=s)
    assert pipe["probe"].directions_.shape == (1, X.shape[1])
    # routing off: the step-prefixed fit parameter
    plain = pipeline().fit(X, y, probe__spurious=s)
    np.testing.assert_allclose(plain["probe"].directions_, pipe["probe"].directions_)
    # folded: the probe's projection is an affine map, pulled back into the head
    layer = to_torch(pipe)
    assert isinstance(layer, torch.nn.Linear)
    logits = layer(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], pipe.decision_function(X),
                               atol=1e-4)
    # a frozen probe in front of a classifier folds as well
    frozen = make_pipeline(FrozenEstimator(pipe["probe"]), LogisticRegression())
    frozen.fit(X, y)
    head = as_linear_head(frozen)
    np.testing.assert_allclose(head.decision_function(X.astype(np.float64)),
                               frozen.decision_function(X), atol=1e-4)


def test_diagnostics():
    X, y, s = _toy()
    probe = SpuriousProbe().fit(X, y, spurious=s)
    assert probe.separability_[0] > 0.99
    Xn, yn, sn = _toy(seed=5)
    assert probe.separability(Xn, sn, yn)[0] > 0.99
    assert np.ptp(probe.concept_scores(probe.transform(Xn))) < 1e-4
    W, b = np.random.default_rng(0).normal(size=(3, X.shape[1])), np.zeros(3)
    np.testing.assert_allclose(probe.head_sensitivity((W, b)),
                               W @ probe.concept_directions_.T, rtol=1e-6)
    with pytest.raises(ValueError, match="pass a head"):
        probe.head_sensitivity()
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    display = probe.plot_concept_scores(X, y, s)
    labels = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert len(labels) == 4  # one histogram per (class, attribute) group
    import matplotlib.pyplot as plt

    plt.close("all")


# -------------------------------------------------------------------- RR-ClArC
@pytest.mark.parametrize("n_classes", [2, 3])
def test_lam_zero_is_plain_logistic_regression(n_classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] + rng.normal(0, .5, 500) > 0).astype(int)
    if n_classes == 3:
        y = y + (X[:, 1] > 0.7)
    s = rng.integers(0, 2, 500)
    rr = RRClArCClassifier(lam=0, C=0.5, tol=1e-7).fit(X, y, spurious=s)
    lr = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(rr.coef_, lr.coef_, atol=2e-4)
    np.testing.assert_allclose(rr.intercept_, lr.intercept_, atol=2e-4)


def test_head_sensitivity_goes_to_zero_as_lam_grows():
    X, y, s = _toy(n=1000, agree=0.9)
    sens = []
    for lam in [0, 0.01, 0.1, 1, 10, 1e3, 1e6]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            rr = RRClArCClassifier(lam=lam).fit(X, y, spurious=s)
        sens.append(abs(rr.head_sensitivity_[0, 0]))
        assert rr.n_iter_ < 1000  # the reparametrisation keeps large lam cheap
    assert sens[0] > 1.0
    assert all(a > b for a, b in itertools.pairwise(sens))
    assert sens[-1] < 1e-5


def test_penalty_equals_shrinking_the_embeddings_along_v():
    # lam ||W v||^2 + ||W||^2 / (2 C n)  <=>  L2 logistic regression (same C) on
    # embeddings whose component along v is shrunk by a = (1 + 2 lam C n)^-1/2.
    X, y, s = _toy(n=600, d_noise=3)
    X = X.astype(np.float64)
    probe = SpuriousProbe().fit(X, y, spurious=s)
    for lam in (0.05, 1.0):
        rr = RRClArCClassifier(probe=FrozenEstimator(probe), lam=lam, C=0.3, tol=1e-8)
        rr.fit(X, y)
        a = 1 / np.sqrt(1 + 2 * lam * 0.3 * len(y))
        assert rr.equivalent_strength_ == pytest.approx(1 - a)
        shrink = SpuriousProbe(strength=1 - a, reference="zero").fit(X, y, spurious=s)
        lr = make_pipeline(FrozenEstimator(shrink),
                           LogisticRegression(C=0.3, tol=1e-10, max_iter=10000))
        lr.fit(X, y)
        head = as_linear_head(lr)  # the shrinkage folded into the weights
        np.testing.assert_allclose(rr.coef_, head.coef, atol=1e-4)
        np.testing.assert_allclose(rr.intercept_, head.intercept, atol=1e-4)
        # and it is the minimiser of the penalised objective, solved directly
        direct = fit_logistic(X, y, 2, l2=1 / (0.3 * len(y)),
                              subspace=probe.directions_, subspace_penalty=lam,
                              max_iter=50000, tol=1e-9)
        np.testing.assert_allclose(rr.coef_, direct.coef[0], atol=1e-4)


def test_frozen_probe_warm_start_and_export():
    X, y, s = _toy()
    probe = SpuriousProbe().fit(X, y, spurious=s)
    X2, y2, _ = _toy(seed=3)
    rr = RRClArCClassifier(probe=FrozenEstimator(probe), lam=10).fit(X2, y2)  # no spurious
    assert rr.probe_ is probe
    # the warm start changes the path, not the solution
    head = LogisticRegression().fit(X2, y2)
    warm = RRClArCClassifier(probe=FrozenEstimator(probe), head=FrozenEstimator(head),
                             lam=10).fit(X2, y2)
    np.testing.assert_allclose(warm.coef_, rr.coef_, atol=2e-3)
    layer = to_torch(rr)
    logits = layer(torch.as_tensor(X2)).detach().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], rr.decision_function(X2),
                               atol=1e-4)
    # an unfitted probe is cloned and fitted on the data given to fit
    template = SpuriousProbe(strength=0.3)
    fresh = RRClArCClassifier(probe=template, lam=10).fit(X, y, spurious=s)
    assert fresh.probe_ is not template and not hasattr(template, "directions_")
    np.testing.assert_allclose(fresh.probe_.directions_, probe.directions_)


def test_rrclarc_annotation_free_uses_its_head():
    X, y, _ = _toy(n=1500, agree=0.5)
    # a head that leans on the attribute makes mistakes along it
    head = (np.array([[1.0, 2.0] + [0.0] * (X.shape[1] - 2)]), np.array([-3.0]))
    rr = RRClArCClassifier(head=head, lam=100).fit(X, y)
    assert rr.probe_.annotation_free_
    assert abs(rr.probe_.concept_directions_[0, 1]) > 0.8
    assert abs(rr.head_sensitivity_[0, 0]) < 1e-2


# ------------------------------------------------------ effect sizes, WaterDigits
# Asserted on seed 0, whose shipped weights make the embeddings the same on every
# machine up to ~1e-5. Several bounds are seed-specific (seeds 0-4 quoted below, not
# 2 sd under their mean); each holds with its margin under 1e-5 and 1e-4 relative
# noise on the embeddings (14 draws: the WGAs move by at most 0.005).
@pytest.fixture(scope="module")
def probes(waterdigits, waterdigits3):
    """The supervised probe of each benchmark, fitted on its validation split."""
    return {k: SpuriousProbe().fit(b.X_val, b.y_val, spurious=b.spurious_val)
            for k, b in ((2, waterdigits), (3, waterdigits3))}


def _attribute_auc(Z, s, n_values):
    """Cross-validated ROC AUC of a fresh logistic regression for the attribute."""
    p = cross_val_predict(LogisticRegression(max_iter=5000), Z, s, cv=3,
                          method="predict_proba")
    return roc_auc_score(s, p[:, 1]) if n_values == 2 else roc_auc_score(
        s, p, multi_class="ovr")


def test_probe_separates_then_removes_the_attribute(waterdigits, probes):
    b, probe = waterdigits, probes[2]
    assert probe.separability_[0] >= 0.9
    assert probe.separability(b.X_test, b.spurious_test, b.y_test)[0] >= 0.9
    before = _attribute_auc(b.X_test, b.spurious_test, 2)
    after = _attribute_auc(probe.transform(b.X_test), b.spurious_test, 2)
    assert before >= 0.95 and after <= 0.6, (before, after)


def test_probe_then_balanced_lr_beats_erm_and_rrclarc_matches(waterdigits, probes):
    b, probe = waterdigits, probes[2]
    erm = _wga(b, resolve_head(b.head))
    fixed = _removed_then_lr(probe, b)
    # +0.297 here; seeds 0-4: +0.297 +0.204 +0.243 +0.106 +0.356.
    assert _wga(b, fixed) >= erm + 0.20, (erm, _wga(b, fixed))
    # lam tuned by worst-group accuracy on validation: fit on train, score on val.
    n_train, n_val = len(b.y_train), len(b.y_val)
    X = np.concatenate([b.X_train, b.X_val])
    y = np.concatenate([b.y_train, b.y_val])
    s = np.concatenate([b.spurious_train, b.spurious_val])
    split = [(np.arange(n_train), np.arange(n_train, n_train + n_val))]
    rr = RRClArCClassifier(probe=FrozenEstimator(probe), head=b.head, class_weight="balanced")
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(rr, {"lam": [0.0, 0.1, 1.0, 10.0, 100.0]},
                              scoring=worst_group_scorer, cv=split, refit=False)
        search.fit(X, y, spurious=s)
    assert search.best_params_["lam"] > 0
    tuned = rr.set_params(**search.best_params_).fit(b.X_train, b.y_train)
    gap = _wga(b, tuned) - _wga(b, fixed)
    assert abs(gap) <= 0.02, (_wga(b, tuned), _wga(b, fixed))


def test_multiclass_effect_and_the_signal_left_behind(waterdigits3, probes):
    b, probe = waterdigits3, probes[3]
    assert probe.directions_.shape[0] == 2  # 3 one-vs-rest directions of rank 2
    assert probe.separability_.min() >= 0.9
    erm = _wga(b, resolve_head(b.head))
    fixed = _removed_then_lr(probe, b)
    assert _wga(b, fixed) >= erm + 0.05, (erm, _wga(b, fixed))
    rr = RRClArCClassifier(probe=FrozenEstimator(probe), head=b.head, lam=100.0,
                           class_weight="balanced").fit(b.X_train, b.y_train)
    assert abs(_wga(b, rr) - _wga(b, fixed)) <= 0.02
    # Pooled over classes the attribute is gone; within a class it is not (the
    # colour moves each class's embeddings along its own direction): that is
    # what pooling="span" removes, and worst-group accuracy improves with it.
    Xp = probe.transform(b.X_test)
    assert _attribute_auc(Xp, b.spurious_test, 3) <= 0.6
    c0 = b.y_test == 0
    assert _attribute_auc(Xp[c0], b.spurious_test[c0], 3) >= 0.8
    span = SpuriousProbe(pooling="span").fit(b.X_val, b.y_val, spurious=b.spurious_val)
    assert _attribute_auc(span.transform(b.X_test)[c0], b.spurious_test[c0], 3) <= 0.7
    by_span = _removed_then_lr(span, b)
    assert _wga(b, by_span) >= _wga(b, fixed)


def test_grid_search_picks_a_nonzero_strength(waterdigits):
    b = waterdigits
    pipe = Pipeline([("probe", SpuriousProbe()), ("lr", _balanced_lr())])
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(pipe, {"probe__strength": [0.0, 0.5, 1.0]},
                              scoring=worst_group_scorer, cv=3)
        search.fit(b.X_train, b.y_train, spurious=b.spurious_train)
    assert search.best_params_["probe__strength"] > 0
    scores = search.cv_results_["mean_test_score"]
    # +0.167 here; seeds 1-4: +0.094 +0.092 (strength 0 chosen) +0.020.
    assert scores[-1] >= scores[0] + 0.1


def test_annotation_free_direction(waterdigits, probes):
    b, supervised = waterdigits, probes[2]
    free = SpuriousProbe(head=b.head).fit(b.X_val, b.y_val)
    assert free.annotation_free_ and free.concepts_ == ["mistake"]
    cos = _cos(free.concept_directions_[0], supervised.concept_directions_[0])
    assert abs(cos) >= 0.5
    assert free.separability(b.X_test, b.spurious_test, b.y_test)[0] >= 0.9
    # Helps: retraining on the spuriously correlated training split.
    erm = _wga(b, resolve_head(b.head))
    helped = _removed_then_lr(free, b)
    assert _wga(b, helped) >= erm + 0.20  # +0.451; seeds 1-4: +0.22 +0.09 +0.22 +0.55
    # Hurts: retraining on balanced validation data, which needs no removal, loses
    # the class signal that the mistake direction also carries.
    plain = _balanced_lr().fit(b.X_val, b.y_val)
    blind = make_pipeline(FrozenEstimator(free), _balanced_lr()).fit(b.X_val, b.y_val)
    assert _wga(b, blind) < _wga(b, plain)  # by 0.046; seeds 1, 3, 4: 0.002 0.069 0.094
