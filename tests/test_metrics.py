"""Group metrics against hand-computed values, and the scorer's routing behaviour."""

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from sklearn_spur.exceptions import SpuriousNotRoutedError
from sklearn_spur.metrics import (
    group_report,
    make_worst_group_scorer,
    worst_group_accuracy,
    worst_group_scorer,
)


def test_hand_computed_binary():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    p = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    # groups: (0,0) 2/2, (0,1) 1/2, (1,0) 1/2, (1,1) 2/2
    rep = group_report(y, p, spurious=s)
    assert rep.groups == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_array_equal(rep.counts, [2, 2, 2, 2])
    np.testing.assert_allclose(rep.accuracies, [1, 0.5, 0.5, 1])
    assert rep.mean_accuracy == pytest.approx(6 / 8)
    assert rep.worst_group_accuracy == 0.5
    assert rep.worst_group == (0, 1)  # first of the tied worst
    assert worst_group_accuracy(y, p, spurious=s) == 0.5


def test_multiclass_string_labels_and_values():
    y = np.array(["cat", "cat", "dog", "dog", "eel", "eel"])
    s = np.array(["land", "water", "land", "water", "land", "water"])
    p = np.array(["cat", "dog", "dog", "dog", "eel", "cat"])
    rep = group_report(y, p, spurious=s)
    assert len(rep.groups) == 6
    assert rep.by_group[("cat", "water")] == 0.0
    assert rep.by_group[("dog", "land")] == 1.0
    assert rep.worst_group_accuracy == 0.0
    assert rep.mean_accuracy == pytest.approx(4 / 6)


def test_two_dimensional_spurious_gives_tuples():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([[0, 0], [0, 1], [1, 0], [0, 0], [1, 1], [1, 1]])
    p = np.array([0, 1, 0, 1, 1, 0])
    rep = group_report(y, p, spurious=s, missing="ignore")
    # attribute tuples seen: (0,0), (0,1), (1,0), (1,1) -> 2 classes x 4 = 8 groups
    assert len(rep.groups) == 8
    assert rep.by_group[(0, (0, 1))] == 0.0
    assert rep.by_group[(1, (1, 1))] == 0.5
    assert rep.worst_group_accuracy == 0.0


def test_absent_group_is_reported_not_dropped():
    y = np.array([0, 0, 1, 1])
    s = np.array([0, 1, 0, 0])  # group (1, 1) has no samples
    p = np.array([0, 0, 1, 1])
    with pytest.warns(UserWarning, match=r"1 group\(s\) have no samples.*\(1, 1\)"):
        rep = group_report(y, p, spurious=s)
    assert (1, 1) in rep.groups and np.isnan(rep.by_group[(1, 1)])
    assert rep.missing_groups == [(1, 1)]
    assert "no samples" in str(rep)
    with pytest.raises(ValueError, match="missing='raise'"):
        worst_group_accuracy(y, p, spurious=s, missing="raise")


def test_report_prints_table():
    rep = group_report([0, 1, 1, 0], [0, 1, 0, 0], spurious=[1, 1, 0, 0])
    text = str(rep)
    assert "worst-group accuracy 0.000" in text
    assert "<- worst" in text
    assert text.splitlines()[0].split() == ["class", "spurious", "count", "accuracy"]


def test_report_to_frame():
    pd = pytest.importorskip("pandas")
    frame = group_report([0, 1, 1, 0], [0, 1, 0, 0], spurious=[1, 1, 0, 0]).to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["class", "spurious", "count", "accuracy"]
    assert frame["count"].sum() == 4


def test_report_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = group_report([0, 1, 1, 0], [0, 1, 0, 0], spurious=[1, 1, 0, 0]).plot()
    assert len(ax.patches) == 4
    ax.figure.savefig(tmp_path / "r.png")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"y_true": [0, 1], "y_pred": [0], "spurious": [0, 1]}, "equal length"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "spurious": [0]}, "spurious.*1 rows"),
        ({"y_true": [], "y_pred": [], "spurious": []}, "empty"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "spurious": [0.0, np.nan]}, "NaN"),
        ({"y_true": [0, 1], "y_pred": [0, 1],
          "spurious": np.array(["a", 1], dtype=object)},
         "spurious.*mixes label types"),
        ({"y_true": np.array(["a", 1], dtype=object), "y_pred": [0, 1],
          "spurious": [0, 1]},
         "y_true.*mixes"),
    ],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        worst_group_accuracy(kwargs.pop("y_true"), kwargs.pop("y_pred"), **kwargs)


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.8, y, 1 - y)
    X = np.c_[y + rng.normal(0, 1.0, n), s + rng.normal(0, 0.3, n)]
    return X, y, s


def test_scorer_direct_call_matches_metric():
    X, y, s = _data()
    lr = LogisticRegression().fit(X, y)
    assert worst_group_scorer(lr, X, y, spurious=s) == worst_group_accuracy(
        y, lr.predict(X), spurious=s)


def test_scorer_without_spurious_raises_with_fix():
    X, y, _s = _data()
    lr = LogisticRegression().fit(X, y)
    with pytest.raises(SpuriousNotRoutedError, match="enable_metadata_routing=True"):
        worst_group_scorer(lr, X, y)


def test_routing_off_grid_search_raises_not_nan():
    X, y, _s = _data()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]},
                          scoring=worst_group_scorer, cv=3)
    with pytest.raises(SpuriousNotRoutedError, match="enable_metadata_routing"):
        search.fit(X, y)


def test_routed_cross_val_score_with_plain_estimator():
    X, y, s = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        scores = cross_val_score(LogisticRegression(), X, y, cv=3,
                                 scoring=make_worst_group_scorer(),
                                 params={"spurious": s})
    assert np.all(np.isfinite(scores)) and np.all(scores < 1)
    # each fold's score is the WGA on that fold's own attribute values
    expected = []
    from sklearn.model_selection import StratifiedKFold

    for tr, te in StratifiedKFold(3).split(X, y):
        lr = LogisticRegression().fit(X[tr], y[tr])
        expected.append(worst_group_accuracy(y[te], lr.predict(X[te]), spurious=s[te]))
    np.testing.assert_allclose(scores, expected)


def test_routing_on_but_not_passed_raises():
    X, y, _s = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]},
                              scoring=worst_group_scorer, cv=3)
        with pytest.raises(SpuriousNotRoutedError,
                           match="pass it to the outermost fit"):
            search.fit(X, y)


def test_scorer_request_can_be_switched_off():
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_worst_group_scorer().set_score_request(spurious=False)
        routing = scorer.get_metadata_routing()
        assert routing.score.requests["spurious"] is False
    default = worst_group_scorer.get_metadata_routing()
    assert default.score.requests["spurious"] is True


def test_make_scorer_rejects_bad_missing():
    with pytest.raises(ValueError, match="missing"):
        make_worst_group_scorer(missing="sometimes")
