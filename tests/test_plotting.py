"""Displays: the numbers they hold and what they draw."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sklearn_spur import (  # noqa: E402
    SingleWeightEditor,
    SpuriousProbe,
    worst_group_scorer,
)
from sklearn_spur.plotting import (  # noqa: E402
    ConceptScoreDisplay,
    GroupAccuracyDisplay,
    StrengthCurveDisplay,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _spurious_data(n=1200, agree=0.95, seed=0):
    """Class in feature 0 (weak), attribute in feature 1 (strong), agreeing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < agree, y, 1 - y)
    X = np.c_[y + rng.normal(0, 0.7, n), 3 * s + rng.normal(0, 0.5, n)]
    return X.astype(np.float32), y, s


def test_group_accuracy_bars_hold_per_group_accuracy():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    before = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # follows the attribute
    after = y.copy()
    disp = GroupAccuracyDisplay.from_predictions(
        y, {"before": before, "after": after}, spurious=s)
    np.testing.assert_allclose(disp.reports["before"].accuracies, [1, 0, 0, 1])
    assert disp.reports["before"].worst_group_accuracy == 0.0
    assert disp.reports["after"].worst_group_accuracy == 1.0
    heights = [p.get_height() for p in disp.ax_.patches]
    assert len(heights) == 8  # 4 groups x 2 models
    np.testing.assert_allclose(sorted(heights), [0, 0, 1, 1, 1, 1, 1, 1])
    labels = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert labels == ["before (WGA 0.00)", "after (WGA 1.00)"]


def test_group_accuracy_from_estimator_names_and_predictions():
    X, y, s = _spurious_data()
    editor = SingleWeightEditor(strength=0.0).fit(X, y, spurious=s)
    disp = GroupAccuracyDisplay.from_estimator(editor, X, y, spurious=s, plot=False)
    assert list(disp.reports) == ["SingleWeightEditor"]
    assert not hasattr(disp, "ax_")
    rep = disp.reports["SingleWeightEditor"]
    assert rep.mean_accuracy == pytest.approx(np.mean(editor.predict(X) == y))


def test_strength_curve_from_estimator_finds_a_better_strength():
    # Fitted on correlated data, the unedited head fails the minority groups;
    # a strong edit fixes them: the curve must rise and its best value be > 0.
    X, y, s = _spurious_data()
    Xv, yv, sv = _spurious_data(800, agree=0.5, seed=1)
    editor = SingleWeightEditor(strength=0.0).fit(X, y, spurious=s)
    values = [0.0, 0.5, 0.9, 0.99, 0.999]
    disp = StrengthCurveDisplay.from_estimator(editor, Xv, yv, spurious=sv,
                                               values=values)
    assert disp.best_value_ > 0
    assert disp.worst_group_accuracy.max() >= disp.worst_group_accuracy[0] + 0.2
    assert editor.strength == 0.0  # the fitted estimator is not modified
    xs, ys = disp.ax_.lines[0].get_data()
    np.testing.assert_allclose(xs, values)
    np.testing.assert_allclose(ys, disp.worst_group_accuracy)


def test_strength_curve_from_search_reads_cv_results():
    X, y, s = _spurious_data()
    grid = {"strength": [0.0, 0.9, 0.99]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(SingleWeightEditor(), grid, cv=2,
                              scoring={"wga": worst_group_scorer,
                                       "accuracy": "accuracy"},
                              refit="wga")
        search.fit(X, y, spurious=s)
    disp = StrengthCurveDisplay.from_search(search, plot=False)
    np.testing.assert_allclose(disp.values, grid["strength"])
    np.testing.assert_allclose(disp.worst_group_accuracy,
                               search.cv_results_["mean_test_wga"])
    np.testing.assert_allclose(disp.mean_accuracy,
                               search.cv_results_["mean_test_accuracy"])
    assert disp.best_value_ == search.best_params_["strength"]


def test_concept_scores_separate_the_attribute():
    X, y, s = _spurious_data(agree=0.5)
    probe = SpuriousProbe().fit(X, y, spurious=s)
    disp = ConceptScoreDisplay.from_estimator(probe, X, y, spurious=s)
    assert set(disp.groups_) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # the attribute moves the scores by about 3 (feature 1's mean shift)
    for c in (0, 1):
        gap = disp.groups_[(c, 1)].mean() - disp.groups_[(c, 0)].mean()
        assert gap > 2.5
    assert len(disp.ax_.patches) == 4  # one step histogram per group


def test_displays_draw_on_given_axes():
    fig, ax = plt.subplots()
    disp = StrengthCurveDisplay([0, 0.5, 1], [0.1, 0.7, 0.4], [0.9, 0.85, 0.6])
    disp.plot(ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert disp.best_value_ == 0.5
