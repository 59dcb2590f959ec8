"""Displays: the numbers they hold and what they draw."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sklearn_spur import (
    SingleWeightEditor,
    SpuriousProbe,
    make_worst_group_scorer,
    worst_group_scorer,
)
from sklearn_spur.plotting import (
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
                                               values=values, x="strength")
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


def _legend_clear_of_axes(ax):
    """The legend's box and the axes' data area do not overlap."""
    fig = ax.figure
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    area = ax.get_window_extent()
    return legend.x0 >= area.x1 or legend.y1 <= area.y0 or legend.y0 >= area.y1


def _search(scoring, refit=True, grid=None):
    X, y, s = _spurious_data()
    grid = grid or {"strength": [0.0, 0.9, 0.99]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(SingleWeightEditor(), grid, cv=2, scoring=scoring,
                              refit=refit)
        search.fit(X, y, spurious=s)
    return search


def test_strength_curve_from_search_with_one_metric_is_not_called_mean_accuracy():
    search = _search(worst_group_scorer)
    disp = StrengthCurveDisplay.from_search(search)
    assert disp.mean_accuracy is None
    assert disp.score_name == "worst-group accuracy"
    labels = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert labels[0] == "worst-group accuracy"
    assert not any("mean accuracy" in t for t in labels)
    assert len(disp.ax_.lines) == 2  # the curve and the best-value marker
    # another single metric is labelled by its name, on a "score" axis
    tolerant = _search(make_worst_group_scorer(missing="ignore"))
    assert StrengthCurveDisplay.from_search(
        tolerant, plot=False).score_name == "worst-group accuracy"
    other = StrengthCurveDisplay.from_search(_search("balanced_accuracy"), plot=False)
    assert other.score_name == "balanced accuracy" and other.mean_accuracy is None


def test_strength_curve_from_search_refuses_what_it_cannot_draw():
    search = _search(worst_group_scorer)
    with pytest.raises(ValueError, match="no parameter 'lam'"):
        StrengthCurveDisplay.from_search(search, param_name="lam")
    two = _search(worst_group_scorer,
                  grid={"strength": [0.0, 0.9], "C": [0.1, 1.0]})
    with pytest.raises(ValueError, match="varies other parameters"):
        StrengthCurveDisplay.from_search(two)


def test_strength_axis_can_be_the_bias_shift():
    values = np.array([0.0, 0.5, 0.9, 0.95, 0.99, 0.999])
    disp = StrengthCurveDisplay(values, np.linspace(0.2, 0.8, 6))
    disp.plot(x="shift")
    xs, _ = disp.ax_.lines[0].get_data()
    np.testing.assert_allclose(xs, -np.log(1 - values))
    assert "-log(1 - strength)" in disp.ax_.get_xlabel()
    assert disp.ax_.child_axes  # the strength, on the top axis
    # "auto" picks the shift for a strength grid reaching 0.9, not otherwise
    auto = StrengthCurveDisplay(values, np.linspace(0.2, 0.8, 6)).plot()
    np.testing.assert_allclose(auto.ax_.lines[0].get_data()[0], xs)
    plain = StrengthCurveDisplay([0.0, 0.5, 1.0], [0.1, 0.7, 0.4]).plot()
    np.testing.assert_allclose(plain.ax_.lines[0].get_data()[0], [0, 0.5, 1])
    with pytest.raises(ValueError, match="needs values in"):
        StrengthCurveDisplay([0.0, 1.0], [0.1, 0.2]).plot(x="shift")
    with pytest.raises(ValueError, match="x must be"):
        disp.plot(x="log")


def test_legends_do_not_hide_data():
    y = np.repeat([0, 0, 1, 1], 5)
    s = np.tile(np.repeat([0, 1], 5), 2)
    bars = GroupAccuracyDisplay.from_predictions(y, {"a": y, "b": 1 - y}, spurious=s)
    curve = StrengthCurveDisplay([0, 0.5, 1], [0.1, 0.7, 0.4], [0.9, 0.85, 0.6]).plot()
    X, yy, ss = _spurious_data(agree=0.5)
    probe = SpuriousProbe().fit(X, yy, spurious=ss)
    hist = ConceptScoreDisplay.from_estimator(probe, X, yy, spurious=ss)
    for disp in (bars, curve, hist):
        assert _legend_clear_of_axes(disp.ax_), type(disp).__name__
        with warnings.catch_warnings():  # a user's own layout call stays quiet
            warnings.simplefilter("error")
            disp.figure_.tight_layout()
    assert hist.ax_.get_xlabel() == "concept score (towards s=1)"


def test_group_bars_are_matched_by_group():
    full = GroupAccuracyDisplay.from_predictions(
        [0, 0, 1, 1], [0, 1, 1, 1], spurious=[0, 1, 0, 1], plot=False)
    # a split with class 0 only: its report has 2 groups, not 4
    part = GroupAccuracyDisplay.from_predictions(
        [0, 0, 0], [0, 1, 1], spurious=[1, 1, 0], plot=False)
    reports = {"part": part.reports["model"], "full": full.reports["model"]}
    assert len(reports["part"].groups) == 2
    disp = GroupAccuracyDisplay(reports).plot()
    ticks = [t.get_text() for t in disp.ax_.get_xticklabels()]
    assert ticks == ["y=0\ns=0", "y=0\ns=1", "y=1\ns=0", "y=1\ns=1"]
    heights = [p.get_height() for p in disp.ax_.patches]
    np.testing.assert_allclose(heights, [0, 0.5, 0, 0, 1, 0, 1, 1])
    assert [t.get_text() for t in disp.ax_.texts] == ["n/a", "n/a"]
