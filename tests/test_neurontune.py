"""NeuronTuner: the delta rule, its edge cases, its guard, and its effect sizes.

No test here passes group labels to NeuronTuner or to its model selection;
they are used only to measure worst-group accuracy on the test split.
"""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from scipy.stats import ortho_group
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score, roc_auc_score
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

from sklearn_spur import DFRClassifier, ERMClassifier, replace_head, worst_group_scorer
from sklearn_spur.methods.neurontune import (
    NeuronTuner,
    neuron_delta_scorer,
    neuron_deltas,
    worst_class_scorer,
)
from sklearn_spur.metrics import worst_class_accuracy, worst_group_accuracy


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The fits here are small: BLAS threads only add contention (several times
    # slower on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _wga(est, X, y, s):
    return worst_group_accuracy(y, est.predict(X), spurious=s)


def _quiet_fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(*args, **kwargs)


def _relu_units(n, *, n_classes=2, rho=0.95, n_noise=100, seed=0):
    """Post-ReLU units where the premise of NeuronTune holds.

    8 core units per class fire (with a strength that varies) for that class,
    8 units per background value fire for that value, and ``n_noise`` sparse
    units fire at random; everything is mostly 0 where it is not "on".
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    other = (y + rng.integers(1, n_classes, n)) % n_classes
    s = np.where(rng.random(n) < rho, y, other)
    strength = rng.uniform(0, 2, (n, 1))
    core = np.repeat(np.eye(n_classes)[y], 8, axis=1) * strength - 0.5
    spur = 2 * np.repeat(np.eye(n_classes)[s], 8, axis=1) - 0.5
    noise = np.full((n, n_noise), -1.0)
    X = np.c_[core + rng.normal(0, 1, core.shape),
              spur + rng.normal(0, 0.3, spur.shape),
              noise + rng.normal(0, 1, noise.shape)]
    return np.maximum(0, X).astype(np.float32), y, s


@pytest.fixture(scope="module")
def premise():
    """Binary ReLU units: training split (rho=0.95), balanced validation and test."""
    X_tr, y_tr, s_tr = _relu_units(4000, seed=1)
    X_va, y_va, _ = _relu_units(1000, rho=0.5, seed=2)
    X_te, y_te, s_te = _relu_units(3000, rho=0.5, seed=3)
    head = ERMClassifier().fit(X_tr, y_tr)
    return X_tr, y_tr, X_va, y_va, X_te, y_te, s_te, head


def _signed(n, rho, seed, d=32):
    """Dense signed embeddings (a sentence encoder's kind): class and attribute
    directions mixed into every coordinate by a fixed rotation."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < rho, y, 1 - y)
    Z = rng.normal(0, 1, (n, d))
    Z[:, :8] += 0.6 * (2 * y - 1)[:, None]
    Z[:, 8:10] += 1.5 * (2 * s - 1)[:, None]
    return (Z @ ortho_group.rvs(d, random_state=0)).astype(np.float32), y, s


# ---------------------------------------------------------------- the rule
def test_deltas_are_medians_of_mistakes_minus_successes():
    X = np.array([[0, 5], [2, 5], [4, 1], [9, 0], [1, 1], [3, 2], [7, 7]], dtype=float)
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    wrong = np.array([True, True, False, False, False, False, False])
    delta = neuron_deltas(X, y, wrong, 2)
    # class 0: mistakes rows 0-1 (medians 1, 5), successes rows 2-3 (6.5, 0.5)
    np.testing.assert_allclose(delta[0], [1 - 6.5, 5 - 0.5])
    assert np.isnan(delta[1]).all()  # class 1 has no mistakes


def test_premise_mask_matters_and_carries_the_attribute(premise):
    X_tr, y_tr, X_va, y_va, X_te, y_te, s_te, head = premise
    # identify on held-out data, retrain on the training split (the paper's setting)
    found = NeuronTuner(head=head, random_state=0).fit(X_va, y_va)
    tuned = NeuronTuner(head=head, units=found.spurious_dims_).fit(X_tr, y_tr)
    control = NeuronTuner(head=head, units=np.array([], int)).fit(X_tr, y_tr)
    wga_tuned, wga_control = (_wga(e, X_te, y_te, s_te) for e in (tuned, control))
    # the same retraining on the training split, with and without the mask
    assert wga_tuned >= wga_control + 0.10, (wga_tuned, wga_control)
    assert wga_tuned >= _wga(head, X_te, y_te, s_te) + 0.10
    dims = tuned.spurious_dims_
    assert set(dims) <= set(range(16, 32)) and len(dims) >= 8  # background units only
    np.testing.assert_array_equal(tuned.coef_[:, dims], 0)
    assert control.spurious_dims_.size == 0 and np.all(control.coef_ != 0)
    # the zeroed units carry the attribute on their own
    probe = LogisticRegression().fit(X_te[:, dims], s_te)
    assert roc_auc_score(s_te, probe.decision_function(X_te[:, dims])) >= 0.8


def test_aggregate_modes_on_three_classes():
    X, y, _ = _relu_units(1500, n_classes=3, rho=0.5, n_noise=20, seed=4)
    X_tr, y_tr, _ = _relu_units(1500, n_classes=3, n_noise=20, seed=5)
    head = ERMClassifier().fit(X_tr, y_tr)
    union = NeuronTuner(head=head, max_accuracy_drop=None).fit(X, y)
    inter = NeuronTuner(head=head, aggregate="all", max_accuracy_drop=None).fit(X, y)
    per_class = NeuronTuner(head=head, aggregate="class",
                            max_accuracy_drop=None).fit(X, y)
    flagged = union.delta_ > 0
    np.testing.assert_array_equal(union.mask_, flagged.any(axis=0))
    np.testing.assert_array_equal(inter.mask_, flagged.all(axis=0))
    assert per_class.mask_.shape == (3, X.shape[1])
    for k in range(3):  # class k's score leaves the units other classes' mistakes flag
        others = np.delete(flagged, k, axis=0).any(axis=0)
        np.testing.assert_array_equal(per_class.mask_[k], others)
        np.testing.assert_array_equal(per_class.coef_[k, per_class.mask_[k]], 0)
        assert np.all(per_class.coef_[k, ~per_class.mask_[k]] != 0)
    np.testing.assert_array_equal(union.coef_[:, union.mask_], 0)
    # background units only (24-47), most of them
    assert set(union.spurious_dims_) <= set(range(24, 48))
    assert len(union.spurious_dims_) >= 16


def test_retraining_is_class_balanced_logistic_regression(premise):
    X_tr, y_tr, X_va, y_va, *_ = premise
    tuner = NeuronTuner(units=np.array([], int), standardize=False, C=0.5, tol=1e-6,
                        max_iter=5000).fit(X_tr, y_tr)
    # Newton's method: lbfgs stops ~2e-3 from the optimum on this ill-conditioned problem.
    ref = LogisticRegression(C=0.5, class_weight="balanced", solver="newton-cholesky",
                             tol=1e-10).fit(X_tr.astype(np.float64), y_tr)
    np.testing.assert_allclose(tuner.coef_, ref.coef_, atol=2e-3)
    np.testing.assert_allclose(tuner.intercept_, ref.intercept_, atol=2e-3)


def test_dtypes_follow_the_input(premise):
    X_tr, y_tr, X_va, y_va, *_, head = premise
    t32 = NeuronTuner(head=head, random_state=0).fit(X_va, y_va)
    t64 = NeuronTuner(head=head, random_state=0).fit(X_va.astype(np.float64), y_va)
    assert t32.coef_.dtype == t32.delta_.dtype == np.float32
    assert t64.coef_.dtype == t64.delta_.dtype == np.float64
    assert t32.decision_function(X_va).dtype == np.float32
    np.testing.assert_array_equal(t32.spurious_dims_, t64.spurious_dims_)


# ---------------------------------------------------------------- edge cases
def test_perfect_head_is_kept_with_a_warning():
    X, y, _ = _relu_units(400, rho=0.5, n_noise=5, seed=6)
    w = np.zeros((1, X.shape[1]))
    w[0, :8], w[0, 8:16] = 1, -1
    y = (X @ w.T + 0.01 > 0).astype(int).ravel()  # the head is right by construction
    with pytest.warns(UserWarning, match="no mistake"):
        tuner = NeuronTuner(head=(w, np.array([0.01]))).fit(X, y)
    np.testing.assert_array_equal(tuner.coef_, w)
    assert tuner.spurious_dims_.size == 0 and tuner.n_iter_ == 0
    np.testing.assert_array_equal(tuner.predict(X), y)


def test_class_without_mistakes_is_skipped(premise):
    X_tr, y_tr, X_va, y_va, *_ = premise
    # a head that predicts class 1 unless the class-0 core units are very strong:
    # class 1 is never wrong, class 0 often is
    w = np.zeros((1, X_va.shape[1]), np.float32)
    w[0, :8] = -1
    head = (w, np.array([8.0], np.float32))
    with pytest.warns(UserWarning, match=r"classes \[1\]"):
        tuner = NeuronTuner(head=head, random_state=0).fit(X_va, y_va)
    assert tuner.skipped_classes_ == [1]
    assert np.isnan(tuner.delta_[1]).all() and not np.isnan(tuner.delta_[0]).any()


def test_every_unit_flagged_is_refused_or_shrunk():
    X, y, _ = _signed(600, 0.5, 7)
    head = ERMClassifier().fit(*_signed(600, 0.95, 8)[:2])
    with pytest.raises(ValueError, match="every unit"):
        _quiet_fit(NeuronTuner(head=head, max_accuracy_drop=None), X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner = NeuronTuner(head=head, max_accuracy_drop=1.0, random_state=0).fit(X, y)
    assert any("every unit" in str(w.message) for w in caught)
    assert tuner.n_flagged_ == X.shape[1]
    assert tuner.spurious_dims_.size == X.shape[1] // 2  # the guard's first halving


def test_guard_halvings_keep_the_largest_raw_deltas():
    # The paper's statistic is the raw median delta; the guard's halvings keep
    # its largest values. Unit 1 has the largest delta (3) but the largest
    # spread; ranked by delta / spread, unit 0 (delta 0.5, spread 0.2) would win.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    flip = rng.random(400) < 0.2  # the head's mistakes: z on the wrong side
    z = 0.8 * np.where(flip, 1 - y, y) + 0.1 + rng.uniform(0, 0.05, 400)
    X = np.c_[0.1 * np.abs(rng.normal(size=400)) + 0.5 * flip,
              10 * np.abs(rng.normal(size=400)) + 3 * flip, z].astype(np.float32)
    head = (np.float32([[0, 0, 1]]), np.float32([-0.5]))
    tuner = _quiet_fit(NeuronTuner(head=head, max_accuracy_drop=1.0, random_state=0),
                       X, y)
    assert tuner.n_flagged_ == 3 and list(tuner.guard_scores_) == [0, 1]
    delta = tuner.delta_[0]
    assert delta[1] > 2 * max(delta[0], delta[2])  # about 3.8 against 0.5 and 0.8
    assert np.argmax(delta / X.std(axis=0)) != 1  # the scaled ranking would differ
    assert tuner.spurious_dims_.tolist() == [1]


def test_given_units_are_checked_and_data_is_not_a_fit_parameter(premise):
    X_tr, y_tr, X_va, y_va, *_, head = premise
    with pytest.raises(ValueError, match="unit indices"):
        NeuronTuner(head=head, units=[0.5]).fit(X_va, y_va)
    with pytest.raises(ValueError, match="unit indices"):
        NeuronTuner(head=head, units=[X_va.shape[1]]).fit(X_va, y_va)
    with pytest.raises(ValueError, match="shape"):
        NeuronTuner(head=head, units=np.ones(3, bool)).fit(X_va, y_va)
    with pytest.raises(TypeError, match="X_tune"):
        NeuronTuner(head=head).fit(X_va, y_va, X_tune=X_tr, y_tune=y_tr)
    tuner = NeuronTuner(head=head, units=[0, 2]).fit(X_tr, y_tr)
    assert np.all(tuner.coef_[:, [0, 2]] == 0) and tuner.guard_scores_ == {}


# ---------------------------------------------------------------- the guard
def test_guard_on_signed_embeddings():
    X_tr, y_tr, _ = _signed(3000, 0.95, 1)
    X_va, y_va, _ = _signed(1000, 0.5, 2)
    X_te, y_te, s_te = _signed(3000, 0.5, 3)
    head = ERMClassifier().fit(X_tr, y_tr)
    control = _quiet_fit(NeuronTuner(head=head, threshold=np.inf), X_va, y_va)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        default = NeuronTuner(head=head, random_state=0).fit(X_va, y_va)
    messages = " ".join(str(w.message) for w in caught)
    assert "negative values" in messages and "every unit" in messages
    loose = _quiet_fit(NeuronTuner(head=head, max_accuracy_drop=1.0, random_state=0),
                       X_va, y_va)
    acc = {k: e.score(X_te, y_te) for k, e in
           {"control": control, "default": default, "loose": loose}.items()}
    assert acc["default"] >= acc["control"] - 0.02, acc
    assert _wga(default, X_te, y_te, s_te) >= _wga(control, X_te, y_te, s_te) - 0.02
    assert acc["loose"] <= acc["control"] - 0.10, acc  # what the guard prevents


def test_guard_on_dense_cnn_units(waterdigits3):
    b = waterdigits3
    control = NeuronTuner(head=b.head, threshold=np.inf).fit(b.X_val, b.y_val)
    default = _quiet_fit(NeuronTuner(head=b.head, random_state=0), b.X_val, b.y_val)
    unguarded = _quiet_fit(NeuronTuner(head=b.head, max_accuracy_drop=None),
                           b.X_val, b.y_val)
    wga = {k: _wga(e, b.X_test, b.y_test, b.spurious_test) for k, e in
           {"control": control, "default": default, "unguarded": unguarded}.items()}
    assert unguarded.n_flagged_ >= b.X_val.shape[1] // 2  # dense units: most flagged
    assert wga["unguarded"] <= wga["control"] - 0.30, wga  # the collapse
    assert wga["default"] >= wga["control"] - 0.05, wga
    assert len(default.spurious_dims_) < unguarded.n_flagged_
    scores = default.guard_scores_
    assert min(scores.values()) <= scores[0] - 0.30  # the guard saw the collapse
    assert scores[len(default.spurious_dims_)] >= scores[0] - 0.02  # and avoided it


# ---------------------------------------------------------------- effect sizes
# On seed 0 (shipped weights: the embeddings are the same on every machine up to
# ~1e-5). Gains over ERM, seeds 0-4 (two classes): the tuner +0.516 +0.376 +0.423
# +0.385 +0.558 (mean 0.452, sd 0.081), the grid search +0.513 +0.392 +0.350 +0.350
# +0.558 (mean 0.433, sd 0.097): the +0.30 bound holds on seed 0, not 2 sd under the
# mean; under 1e-5 and 1e-4 relative noise on the embeddings (14 draws) every WGA
# here moves by at most 0.005, and the guard's and the grid search's choices never.
@pytest.mark.parametrize("name", ["waterdigits", "waterdigits3"])
def test_waterdigits_without_group_labels(name, request):
    b = request.getfixturevalue(name)
    erm = ERMClassifier(head=b.head).fit(b.X_val, b.y_val)
    dfr = DFRClassifier(random_state=0).fit(b.X_val, b.y_val, spurious=b.spurious_val)
    tuner = _quiet_fit(NeuronTuner(head=b.head, random_state=0), b.X_val, b.y_val)
    control = NeuronTuner(head=b.head, threshold=np.inf).fit(b.X_val, b.y_val)
    wga = {k: _wga(e, b.X_test, b.y_test, b.spurious_test) for k, e in
           {"erm": erm, "dfr": dfr, "tuner": tuner, "control": control}.items()}
    assert wga["tuner"] >= wga["erm"] + 0.30, wga
    assert wga["tuner"] >= wga["dfr"] - 0.05, wga
    assert wga["tuner"] >= wga["control"] - 0.05, wga  # the mask costs little here


def test_label_free_grid_search(waterdigits):
    b = waterdigits
    grid = {"threshold": [0.0, 0.5, np.inf], "C": [0.1, 1.0]}
    search = GridSearchCV(NeuronTuner(head=b.head, random_state=0), grid,
                          scoring=worst_class_scorer, cv=3)
    _quiet_fit(search, b.X_val, b.y_val)
    erm_wga = _wga(ERMClassifier(head=b.head).fit(b.X_val, b.y_val),
                   b.X_test, b.y_test, b.spurious_test)
    assert _wga(search, b.X_test, b.y_test, b.spurious_test) >= erm_wga + 0.30
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_routing_sends_spurious_to_the_scorer_only(waterdigits):
    b = waterdigits
    scoring = {"wga": worst_group_scorer, "wca": worst_class_scorer,
               "delta": neuron_delta_scorer}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(NeuronTuner(head=b.head, random_state=0),
                              {"C": [0.1, 1.0]}, scoring=scoring, refit="wca", cv=3)
        _quiet_fit(search, b.X_val, b.y_val, spurious=b.spurious_val)
        # the tuner has no `spurious` in fit: had it been routed there, fit would fail
        assert "spurious" not in NeuronTuner().get_metadata_routing().fit.requests
    res = search.cv_results_
    for key in ("mean_test_wga", "mean_test_wca", "mean_test_delta"):
        assert np.isfinite(res[key]).all()
    # with group labels the worst-group score is below the worst-class one
    assert np.all(res["mean_test_wga"] <= res["mean_test_wca"] + 1e-12)


def test_label_free_scorers_by_hand(premise):
    X_tr, y_tr, X_va, y_va, *_, head = premise
    pred = head.predict(X_va)
    assert worst_class_scorer(head, X_va, y_va) == pytest.approx(
        recall_score(y_va, pred, average=None).min())
    assert worst_class_accuracy(y_va, pred) == worst_class_scorer(head, X_va, y_va)
    delta = neuron_deltas(X_va, y_va, pred != y_va, 2)
    assert neuron_delta_scorer(head, X_va, y_va) == pytest.approx(
        -np.abs(delta).sum(dtype=np.float64), rel=1e-6)
    # a head that makes no mistake has nothing to separate: the best score, 0
    perfect = LogisticRegression().fit(X_va[:, :16], y_va)
    X_easy, y_easy = X_va[:, :16], perfect.predict(X_va[:, :16])
    assert neuron_delta_scorer(perfect, X_easy, y_easy) == 0


# ---------------------------------------------------------------- export
def test_mask_folds_into_the_model(waterdigits):
    b = waterdigits
    tuner = _quiet_fit(NeuronTuner(head=b.head, max_accuracy_drop=None),
                       b.X_val, b.y_val)
    assert tuner.spurious_dims_.size > 0
    layer = tuner.to_torch()
    assert isinstance(layer, torch.nn.Linear)
    weight = layer.weight.detach().numpy()
    np.testing.assert_array_equal(weight[:, tuner.spurious_dims_], 0)
    patched = replace_head(b.model, b.head_name, tuner)
    patched.eval()
    with torch.no_grad():
        logits = patched(torch.as_tensor(b.images_test)).numpy()
    # The model recomputes the embeddings (equal to the stored ones to ~1e-5, the
    # convolution kernels differ between processors): compare up to that.
    margin = tuner.decision_function(b.X_test)
    sure = np.abs(margin) > 1e-2
    np.testing.assert_array_equal(tuner.classes_[logits.argmax(1)][sure],
                                  tuner.predict(b.X_test)[sure])
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], margin,
                               atol=1e-3 * max(1.0, np.abs(margin).max()))


def test_guard_selection_options_on_correlated_held_out_data(label_free_digits):
    # Correlated held-out data (val_rho=0.95), no group label. Test WGA, seeds
    # 0-4, guard by worst-class accuracy (the default): about ERM (0.29 0.38
    # 0.26 0.37 0.30); by inferred groups: 0.15 0.00 0.24 0.03 0.55. On these
    # dense CNN units masking cannot remove the colour, and the inferred groups
    # let the guard accept masks that cost the minority groups: the issue's
    # +0.20 over ERM does not hold for NeuronTuner (see the guide).
    b = label_free_digits[0, 0.95]
    wc = _quiet_fit(NeuronTuner(head=b.head, random_state=0), b.X_val, b.y_val)
    inf = _quiet_fit(NeuronTuner(head=b.head, selection="inferred", random_state=0),
                     b.X_val, b.y_val)
    assert wc.guard_scores_ and inf.guard_scores_
    assert _wga(wc, b.X_test, b.y_test, b.spurious_test) >= b.wga_erm - 0.02
