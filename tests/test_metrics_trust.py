"""Issue 14 (trust): the metrics never give a silent wrong answer.

Regression tests for the defects found (continuous ``spurious``, mismatched
label types, NaN labels, unseen classes, the scorer swallowed by searches,
``groups=``), the adjusted mean accuracy, and an adversarial table of inputs:
each ends in a correct value or a clear error naming the argument.
"""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.feature_selection import RFECV
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    cross_val_score,
    cross_validate,
    learning_curve,
    validation_curve,
)

from sklearn_spur import DFRClassifier
from sklearn_spur._core.groups import check_spurious, reject_unexpected_fit_params
from sklearn_spur.exceptions import SpuriousNotRoutedError
from sklearn_spur.metrics import (
    group_report,
    make_worst_group_scorer,
    worst_class_accuracy,
    worst_group_accuracy,
    worst_group_scorer,
)

pd = pytest.importorskip("pandas")


def _data(seed=0, n=240):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.8, y, 1 - y)
    X = np.c_[y + rng.normal(0, 1.0, n), s + rng.normal(0, 0.3, n)]
    return X, y, s


# ---------------------------------------------------------------- 1. continuous
def test_continuous_spurious_is_refused_not_hundreds_of_groups():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    with pytest.raises(ValueError, match=r"`spurious` holds floats that are not whole.*"
                                         r"continuous.*np.digitize"):
        worst_group_accuracy(y, y, spurious=rng.normal(size=300))
    with pytest.raises(ValueError, match=r"`spurious` has 300 distinct values for 300"):
        worst_group_accuracy(y, y, spurious=np.arange(300))
    # whole floats are labels
    s = (np.arange(300) // 2 % 2).astype(np.float64)
    assert worst_group_accuracy(y, y, spurious=s) == 1.0


def test_distinct_value_rule_boundary():
    n = 100
    y = np.zeros(n, int)
    check_spurious(np.arange(n) % 50, n)  # 50 = n // 2 values: accepted
    with pytest.raises(ValueError, match="51 distinct values"):
        check_spurious(np.arange(n) % 51, n)
    check_spurious(np.arange(10) % 10, 10)  # small n: up to 20 values
    assert worst_group_accuracy(y[:10], y[:10], spurious=np.arange(10)) == 1.0


def test_estimators_refuse_continuous_spurious_too():
    X, y, _ = _data()
    with pytest.raises(ValueError, match="`spurious` holds floats that are not whole"):
        DFRClassifier(n_fits=1).fit(X, y, spurious=np.random.default_rng(0).normal(
            size=len(y)))


# ---------------------------------------------------------------- 2. label types
def test_int_labels_against_str_predictions_are_refused():
    y = np.array([0, 0, 1, 1])
    for call in (worst_group_accuracy, group_report):
        with pytest.raises(ValueError, match=r"`y_true` holds numeric labels but "
                                             r"`y_pred` holds string labels"):
            call(y, y.astype(str), spurious=[0, 1, 0, 1])


def test_scorer_refuses_estimator_with_other_label_type():
    X, y, s = _data()
    est = LogisticRegression().fit(X, y.astype(str))
    with pytest.raises(ValueError, match="`y_pred` holds string labels"):
        worst_group_scorer(est, X, y, spurious=s)


# ---------------------------------------------------------------- 3. NaN labels
@pytest.mark.parametrize("arg", ["y_true", "y_pred", "spurious"])
def test_nan_is_not_a_class_or_group(arg):
    args = {"y_true": np.array([0.0, 1.0, 1.0, 0.0]),
            "y_pred": np.array([0.0, 1.0, 1.0, 0.0]),
            "spurious": np.array([0.0, 0.0, 1.0, 1.0])}
    args[arg][2] = np.nan
    with pytest.raises(ValueError, match=rf"`{arg}` contains NaN or None.*index 2"):
        group_report(args["y_true"], args["y_pred"], spurious=args["spurious"])


# ---------------------------------------------------------------- 4. unseen classes
def test_class_never_predicted_is_warned_and_scores_zero():
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\] of y_true are never "
                                         r"predicted"):
        wga = worst_group_accuracy([0, 1, 2, 2], [0, 1, 1, 1], spurious=[0, 0, 0, 0])
    assert wga == 0.0


def test_encoding_shift_is_pointed_out():
    with pytest.warns(UserWarning, match=r"y_pred holds label\(s\) \[2\].*encodings"):
        worst_group_accuracy([0, 1, 0, 1], [1, 2, 1, 2], spurious=[0, 0, 1, 1])


def test_scorer_warns_on_label_outside_classes_():
    X, y, s = _data()
    est = LogisticRegression().fit(X, y)
    y_test = y.copy()
    y_test[:5] = 7
    with pytest.warns(UserWarning, match=r"\[7\] of y_true are not among the classes "
                                         r"the model can predict \(estimator.classes_"):
        score = worst_group_scorer(est, X, y_test, spurious=s)
    assert score == 0.0


def test_class_absent_from_split_follows_missing_policy():
    y, s = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    with pytest.warns(UserWarning, match=r"2 group\(s\) have no samples.*\(2, 0\)"):
        rep = group_report(y, y, spurious=s, classes=[0, 1, 2])
    assert rep.missing_groups == [(2, 0), (2, 1)] and rep.worst_group_accuracy == 1.0
    with pytest.raises(ValueError, match=r"missing='raise'"):
        group_report(y, y, spurious=s, classes=[0, 1, 2], missing="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group_report(y, y, spurious=s, classes=[0, 1, 2], missing="ignore")


def test_worst_class_accuracy_stays_quiet_in_selection_loops():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert worst_class_accuracy([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    with pytest.warns(UserWarning, match=r"\[2\] of y_true are not among"):
        worst_class_accuracy([0, 2], [0, 0], classes=[0, 1])


# ---------------------------------------------------------------- 5. scorer in searches
def test_not_routed_error_is_an_ordinary_exception():
    assert issubclass(SpuriousNotRoutedError, Exception)


def _search(scoring, n_jobs=1):
    return GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, scoring=scoring, cv=3,
                        n_jobs=n_jobs)


SEARCHES = {
    "grid": lambda X, y, sc: _search(sc).fit(X, y),
    "grid-dict": lambda X, y, sc: _search({"wga": sc, "acc": "accuracy"}).set_params(
        refit="wga").fit(X, y),
    "cross_val_score": lambda X, y, sc: cross_val_score(LogisticRegression(), X, y,
                                                        scoring=sc, cv=3),
    "cross_validate-dict": lambda X, y, sc: cross_validate(
        LogisticRegression(), X, y, scoring={"wga": sc, "acc": "accuracy"}, cv=3),
}


@pytest.mark.parametrize("routing", [False, True])
@pytest.mark.parametrize("search", list(SEARCHES))
def test_unrouted_scorer_stops_the_search_with_the_fix(search, routing):
    """Default error_score=np.nan swallows scorer exceptions; not this one."""
    X, y, _ = _data()
    fix = "enable_metadata_routing=True" if not routing else "outermost fit"
    with (sklearn.config_context(enable_metadata_routing=routing),
          warnings.catch_warnings()):
        warnings.simplefilter("error")  # and no "Scoring failed" warning first
        # (scikit-learn 1.6's LogisticRegression passes `disp` to a newer scipy)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with pytest.raises(SpuriousNotRoutedError, match=fix):
            SEARCHES[search](X, y, worst_group_scorer)


OTHER_USERS = {
    "learning_curve": lambda X, y: learning_curve(
        LogisticRegression(), X, y, cv=3, scoring=worst_group_scorer,
        train_sizes=[0.5, 1.0]),
    "validation_curve": lambda X, y: validation_curve(
        LogisticRegression(), X, y, param_name="C", param_range=[0.1, 1.0], cv=3,
        scoring=worst_group_scorer),
    "RFECV": lambda X, y: RFECV(LogisticRegression(), cv=3,
                                scoring=worst_group_scorer).fit(X, y),
    "permutation_importance": lambda X, y: permutation_importance(
        LogisticRegression().fit(X, y), X, y, scoring=worst_group_scorer),
}


@pytest.mark.parametrize("user", list(OTHER_USERS))
def test_unrouted_scorer_stops_other_scikit_learn_tools(user):
    X, y, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # as above
        with pytest.raises(SpuriousNotRoutedError, match="enable_metadata_routing"):
            OTHER_USERS[user](X, y)


def test_unrouted_scorer_stops_a_parallel_search():
    X, y, _ = _data()
    with pytest.raises(SpuriousNotRoutedError, match="enable_metadata_routing=True"):
        _search(worst_group_scorer, n_jobs=2).fit(X, y)


def test_routed_scorer_in_searches_matches_the_metric():
    X, y, s = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        res = cross_validate(LogisticRegression(), X, y, cv=3, params={"spurious": s},
                             scoring={"wga": worst_group_scorer, "acc": "accuracy"})
        search = _search(worst_group_scorer).fit(X, y, spurious=s)
    assert np.all((res["test_wga"] > 0) & (res["test_wga"] <= res["test_acc"]))
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("routing", [False, True])
def test_make_scorer_of_the_metric_is_protected_too(routing):
    """make_scorer(worst_group_accuracy) without spurious: an error, not NaN."""
    X, y, _ = _data()
    with sklearn.config_context(enable_metadata_routing=routing):
        scorer = make_scorer(worst_group_accuracy)
        if routing:
            scorer = scorer.set_score_request(spurious=True)
        with pytest.raises(SpuriousNotRoutedError, match="worst_group_accuracy needs"):
            cross_val_score(LogisticRegression(), X, y, scoring=scorer, cv=3)
    with pytest.raises(TypeError, match="group_report needs the spurious attribute"):
        group_report([0, 1], [0, 1])


def test_scorer_outside_a_search_raises_at_once():
    X, y, _ = _data()
    est = LogisticRegression().fit(X, y)
    with pytest.raises(SpuriousNotRoutedError, match="pass `spurious=s`"):
        worst_group_scorer(est, X, y)
    with pytest.raises(SpuriousNotRoutedError):
        make_worst_group_scorer(missing="ignore")._score(None, est, X, y)


# ---------------------------------------------------------------- 6. groups=
@pytest.mark.parametrize("call", [
    lambda: worst_group_accuracy([0, 1], [0, 1], groups=[0, 1]),
    lambda: group_report([0, 1], [0, 1], groups=[0, 1], spurious=[0, 1]),
    lambda: worst_group_scorer(LogisticRegression().fit([[0], [1]], [0, 1]),
                               [[0], [1]], [0, 1], groups=[0, 1]),
    lambda: reject_unexpected_fit_params("DFRClassifier", {"groups": [0, 1]}),
])
def test_groups_keyword_gets_the_routing_explanation(call):
    with pytest.raises(TypeError, match=r"passed as `spurious=`, not `groups=`.*"
                                        r"GroupKFold.*enable_metadata_routing=True"):
        call()


def test_reject_unexpected_fit_params():
    reject_unexpected_fit_params("DFRClassifier", {})
    with pytest.raises(TypeError, match=r"^DFRClassifier.fit\(\) got unexpected "
                                        r"keyword argument\(s\) 'foo'; it takes X, y "
                                        r"and spurious.$"):
        reject_unexpected_fit_params("DFRClassifier", {"foo": 1})
    with pytest.raises(TypeError, match=r"^DFRClassifier.fit\(\).*'sensitive_features'"
                                        r".*passed as `spurious=`"):
        reject_unexpected_fit_params("DFRClassifier.fit", ["sensitive_features"])
    with pytest.raises(TypeError, match=r"^NeuronTuner.fit\(\).*'groups'; it takes X "
                                        r"and y. It needs no group labels: drop"):
        reject_unexpected_fit_params("NeuronTuner", {"groups": 1}, takes="X and y")


# ---------------------------------------------------------------- 8. adjusted accuracy
def test_adjusted_accuracy_against_hand_computation():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    p = np.array([0, 0, 0, 1, 0, 1, 1, 1])  # accuracies 1, .5, .5, 1
    # training split: 6 of (0,0), 1 of (0,1), 1 of (1,0), 2 of (1,1)
    y_tr = np.array([0] * 7 + [1] * 3)
    s_tr = np.array([0] * 6 + [1] + [0] + [1] * 2)
    expected = (6 * 1 + 1 * 0.5 + 1 * 0.5 + 2 * 1) / 10
    rep = group_report(y, p, spurious=s, weights=(y_tr, s_tr))
    assert rep.adjusted_accuracy == pytest.approx(expected)
    assert rep.mean_accuracy == pytest.approx(6 / 8)
    shares = {(0, 0): 0.6, (0, 1): 0.1, (1, 0): 0.1, (1, 1): 0.2}
    assert group_report(y, p, spurious=s, weights=shares).adjusted_accuracy == \
        pytest.approx(expected)
    assert "adjusted mean accuracy 0.900" in str(rep)
    assert group_report(y, p, spurious=s).adjusted_accuracy is None


def test_adjusted_accuracy_renormalises_over_measurable_groups():
    y, s, p = np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([0, 1, 1])
    with pytest.warns(UserWarning, match=r"renormalised without them: \[\(1, 1\)\]"):
        rep = group_report(y, p, spurious=s, weights={(0, 0): 1, (1, 0): 1, (1, 1): 2})
    assert rep.adjusted_accuracy == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("weights, exc, match", [
    ({(0, 0): -1.0}, ValueError, "non-negative"),
    ({(0, 0): np.nan}, ValueError, "finite"),
    ({0: 1.0}, ValueError, r"\(class, attribute value\) pairs"),
    ({("a", 0): 1.0}, ValueError, "no share to any group with samples"),
    ((np.array(["a", "b"]), [0, 1]), ValueError, "`weights\\[0\\]` holds string"),
    ((np.array([0, 1]), [0]), ValueError, r"`weights\[1\]` has 1 rows"),
    (([0, 1], [0.5, 0.25]), ValueError, r"`weights\[1\]` holds floats"),
    ([1, 2, 3], TypeError, "mapping"),
])
def test_bad_weights_are_refused(weights, exc, match):
    with pytest.raises(exc, match=match):
        group_report([0, 1, 0, 1], [0, 1, 1, 1], spurious=[0, 0, 1, 1], weights=weights)
