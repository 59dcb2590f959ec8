"""DFRClassifier: the published recipe, its effect size, routing and errors."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from reference_dfr import dfr_reference, predict_reference
from sklearn_spur import DFRClassifier, ERMClassifier, worst_group_accuracy, worst_group_scorer
from sklearn_spur.exceptions import MissingSpuriousError


def _toy(n=600, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.5, y, 1 - y)
    X = np.c_[y + rng.normal(0, 0.7, n), s + rng.normal(0, 0.2, n), rng.normal(size=(n, 8))]
    return X.astype(dtype), y, s


def test_dfr_beats_erm_by_30_points_on_waterdigits(waterdigits):
    b = waterdigits
    erm = ERMClassifier(head=b.head).fit(b.X_train, b.y_train)
    wga_erm = worst_group_accuracy(b.y_test, erm.predict(b.X_test), spurious=b.spurious_test)
    dfr = DFRClassifier(random_state=0).fit(b.X_val, b.y_val, spurious=b.spurious_val)
    wga_dfr = worst_group_accuracy(b.y_test, dfr.predict(b.X_test), spurious=b.spurious_test)
    assert wga_dfr >= wga_erm + 0.30, (wga_erm, wga_dfr)


@pytest.mark.parametrize("fixture", ["waterdigits", "waterdigits3"])
def test_dfr_agrees_with_straightforward_recipe(fixture, request):
    b = request.getfixturevalue(fixture)
    # 10 subsample fits each (20 in the recipe) keep the slow saga reference short.
    ours = DFRClassifier(n_fits=10, random_state=0).fit(b.X_val, b.y_val,
                                                        spurious=b.spurious_val)
    g = b.y_val * 10 + b.spurious_val
    ref = dfr_reference(b.X_val, b.y_val, g, C=ours.C_, n_fits=10, random_state=0)
    p_ours = ours.predict(b.X_test)
    p_ref = predict_reference(ref, b.X_test, ours.classes_)
    assert (p_ours == p_ref).mean() >= 0.95
    wga = [worst_group_accuracy(b.y_test, p, spurious=b.spurious_test) for p in (p_ours, p_ref)]
    assert abs(wga[0] - wga[1]) <= 0.04, wga


def test_tuning_picks_from_grid_and_records_scores():
    X, y, s = _toy()
    dfr = DFRClassifier(n_fits=3, random_state=0).fit(X, y, spurious=s)
    assert set(dfr.tuning_scores_) == set(dfr.Cs)
    assert dfr.tuning_scores_[dfr.C_] == max(dfr.tuning_scores_.values())
    fixed = DFRClassifier(C=0.3, n_fits=3, random_state=0).fit(X, y, spurious=s)
    assert fixed.C_ == 0.3 and fixed.tuning_scores_ == {}


def test_every_C_is_tuned_on_the_same_subsample():
    # The reference recipe: one group-balanced subsample of the fitting half for
    # the whole grid, so a C's score does not depend on the other candidates.
    # (float64 and a tight tol: the batched fits then agree to far below any
    # margin, whatever else is in the batch)
    X, y, s = _toy(n=300, seed=1, dtype=np.float64)
    scores = [DFRClassifier(Cs=Cs, n_fits=2, tol=1e-9, random_state=0).fit(
        X, y, spurious=s).tuning_scores_[0.1] for Cs in [(1.0, 0.1), (0.1, 0.03),
                                                          (0.7, 0.3, 0.1)]]
    assert scores[0] == scores[1] == scores[2], scores


def test_dtypes_and_determinism():
    X, y, s = _toy()
    a = DFRClassifier(n_fits=4, random_state=3).fit(X, y, spurious=s)
    b = DFRClassifier(n_fits=4, random_state=3).fit(X, y, spurious=s)
    assert a.coef_.dtype == np.float32
    np.testing.assert_array_equal(a.coef_, b.coef_)
    c = DFRClassifier(n_fits=4, random_state=3).fit(X.astype(np.float64), y, spurious=s)
    assert c.coef_.dtype == np.float64
    assert (c.predict(X) == a.predict(X)).mean() > 0.99


def test_standardisation_is_folded_into_coef():
    X, y, s = _toy()
    X = X * np.float32(50) + np.float32(7)
    dfr = DFRClassifier(n_fits=2, C=0.1, random_state=0).fit(X, y, spurious=s)
    # the result acts on raw X: it predicts well without any scaler in front
    assert (dfr.predict(X) == y).mean() > 0.7  # Bayes accuracy of the toy is ~0.76
    # and equals a Pipeline fit on standardised data, whose coef is on the scaled space
    pipe = make_pipeline(StandardScaler(), DFRClassifier(n_fits=2, C=0.1, random_state=0))
    pipe.fit(X, y, dfrclassifier__spurious=s)
    assert (pipe.predict(X) == dfr.predict(X)).mean() > 0.99


def test_missing_spurious_names_the_fix():
    X, y, _ = _toy()
    with pytest.raises(MissingSpuriousError, match="pass `spurious=s`"):
        DFRClassifier().fit(X, y)
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="pass it to the outermost fit"):
            GridSearchCV(DFRClassifier(n_fits=2), {"C": [0.1, 1.0]}, cv=2,
                         scoring=worst_group_scorer).fit(X, y)


def test_group_too_small():
    X, y, s = _toy(n=60)
    s = np.zeros_like(s)
    s[0] = 1  # group (y[0], 1) has a single sample
    with pytest.raises(ValueError, match="at least 2 samples.*1\\)"):
        DFRClassifier().fit(X, y, spurious=s)


@pytest.mark.parametrize("bad, match", [({"n_fits": 0}, "n_fits"), ({"C": -1.0}, "'C'"),
                                        ({"penalty": "l3"}, "penalty"),
                                        ({"Cs": [1.0, -0.1]}, "Cs")])
def test_bad_params(bad, match):
    X, y, s = _toy()
    with pytest.raises(ValueError, match=match):
        DFRClassifier(**bad).fit(X, y, spurious=s)


def test_routed_grid_search_over_C(waterdigits):
    b = waterdigits
    with sklearn.config_context(enable_metadata_routing=True):
        gs = GridSearchCV(DFRClassifier(n_fits=5, random_state=0), {"C": [0.01, 0.1, 1.0]},
                          scoring=worst_group_scorer, cv=3)
        gs.fit(b.X_val, b.y_val, spurious=b.spurious_val)
    scores = gs.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and scores.max() > 0.7
    wga = worst_group_accuracy(b.y_test, gs.predict(b.X_test), spurious=b.spurious_test)
    assert wga > 0.7


def test_multi_attribute_spurious():
    X, y, s = _toy()
    s2 = np.c_[s, (X[:, 3] > 0).astype(int)]
    dfr = DFRClassifier(n_fits=3, random_state=0).fit(X, y, spurious=s2)
    assert worst_group_accuracy(y, dfr.predict(X), spurious=s2) > 0.6
