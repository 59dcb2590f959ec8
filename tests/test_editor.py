"""SingleWeightEditor: the edit's mechanics, export, grid search and effect sizes."""

import numpy as np
import pytest
import sklearn
import torch
from scipy.special import logsumexp, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from threadpoolctl import threadpool_limits

import sklearn_spur._core.refit as refit_module
import sklearn_spur.methods.editor as editor_module
from sklearn_spur import (
    DFRClassifier,
    ERMClassifier,
    replace_head,
    worst_group_accuracy,
    worst_group_scorer,
)
from sklearn_spur.methods.editor import (
    SingleWeightEditor,
    fictitious_values,
    strength_grid,
)


@pytest.fixture(scope="module", autouse=True)
def _single_blas_thread():
    # The solver's products are small (a few outputs); BLAS threads only add overhead.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(autouse=True)
def _empty_cache():
    editor_module._FIT_CACHE.clear()
    yield
    editor_module._FIT_CACHE.clear()


@pytest.fixture
def count_fits(monkeypatch):
    """Count the sub-class head fits (calls of the template's solver)."""
    calls = []
    solver = refit_module.fit_logistic

    def counting(*args, **kwargs):
        calls.append(1)
        return solver(*args, **kwargs)

    monkeypatch.setattr(refit_module, "fit_logistic", counting)
    return calls


def _spurious_data(n, rho, *, n_classes=2, n_values=None, seed=0, dtype=np.float32):
    """Class and attribute signals in separate dimensions; ``s`` follows ``y`` (rho)."""
    n_values = n_classes if n_values is None else n_values
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    agree = rng.random(n) < rho
    s = np.where(agree, y % n_values, rng.integers(0, n_values, n))
    centers_y = np.random.default_rng(100).normal(size=(n_classes, 6))
    centers_s = 2 * np.random.default_rng(101).normal(size=(n_values, 4))
    X = np.c_[centers_y[y] * 0.8, centers_s[s], np.zeros((n, 2))]
    X += rng.normal(size=(n, 12))
    return X.astype(dtype), y, s


def _head(X, y):
    lr = LogisticRegression(max_iter=1000).fit(X, y)
    return (lr.coef_, lr.intercept_, lr.classes_)


def _wga(b, split, pred):
    return worst_group_accuracy(getattr(b, f"y_{split}"), pred,
                                spurious=getattr(b, f"spurious_{split}"))


def _pooled(editor, X, drop=None):
    """Class log-sum-exp of the unedited sub-class logits, by hand; ``drop`` removed."""
    S = X.astype(np.float64) @ editor.subclass_coef_.T.astype(np.float64)
    S += editor.subclass_intercept_
    if drop is not None:
        S[:, drop] = -np.inf
    return np.stack([logsumexp(S[:, editor.subclass_class_ == c], axis=1)
                     for c in range(len(editor.classes_))], axis=1)


# ------------------------------------------------------------------ mechanics
def test_subclasses_fictitious_and_prior_shift():
    X, y, s = _spurious_data(2000, 0.9)
    ed = SingleWeightEditor(head=_head(X, y), fictitious="data").fit(X, y, spurious=s)
    assert ed.subclasses_ == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ed.fictitious_ == {0: 0, 1: 1}
    np.testing.assert_array_equal(ed.fictitious_mask_, [True, False, False, True])
    counts = np.bincount(2 * y + s, minlength=4)
    np.testing.assert_array_equal(ed.subclass_counts_, counts)
    # "prior" cancels the log-ratio of fictitious to core frequency, per class
    expected = np.log([counts[0] / counts[1], counts[3] / counts[2]])
    np.testing.assert_allclose(ed.prior_shift_[[0, 3]], expected, rtol=1e-5)
    assert expected.min() > 1.8  # about log(0.95 / 0.05) at rho = 0.9
    np.testing.assert_array_equal(ed.prior_shift_[[1, 2]], 0)


def test_fictitious_on_balanced_data_comes_from_the_head_or_the_training_labels():
    X_tr, y_tr, s_tr = _spurious_data(2000, 0.95, n_classes=3, seed=1)
    head = _head(X_tr, y_tr)
    X, y, s = _spurious_data(1500, 0.0, n_classes=3, seed=2)  # s independent of y
    for rule in ("head", fictitious_values(y_tr, s_tr)):
        ed = SingleWeightEditor(head=head, fictitious=rule).fit(X, y, spurious=s)
        assert ed.fictitious_ == {0: 0, 1: 1, 2: 2}, rule
        assert ed.prior_shift_.max() < 0.3  # balanced: "prior" barely edits
    exact = np.arange(len(y)) % 3  # every value equally frequent in every class
    y_exact = (np.arange(len(y)) // 3) % 3
    with pytest.warns(UserWarning, match="equally associated"):
        SingleWeightEditor(head=head, fictitious="data").fit(X, y_exact, spurious=exact)
    ed = SingleWeightEditor(head=head, fictitious={0: 2, 1: 0, 2: 1})
    ed.fit(X, y, spurious=s)
    assert ed.fictitious_ == {0: 2, 1: 0, 2: 1}
    assert [ed.subclasses_[i] for i in np.flatnonzero(ed.fictitious_mask_)] == [
        (0, 2), (1, 0), (2, 1)]


def test_two_strengths_differ_in_exactly_one_weight_per_fictitious_subclass(count_fits):
    X, y, s = _spurious_data(1500, 0.9, n_classes=3)
    ed = SingleWeightEditor(head=_head(X, y), strength=0.3).fit(X, y, spurious=s)
    state_a = {k: v.clone() for k, v in ed.to_torch().state_dict().items()}
    pred_a, edited_a = ed.predict(X), ed.edited_weights_
    ed.set_params(strength=0.99)
    state_b = ed.to_torch().state_dict()
    assert len(count_fits) == 1  # set_params needs no refit
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        if key != "0.bias":
            assert torch.equal(state_a[key], state_b[key]), key
    changed = np.flatnonzero((state_a["0.bias"] != state_b["0.bias"]).numpy())
    fict = np.flatnonzero(ed.fictitious_mask_)
    np.testing.assert_array_equal(changed, fict)
    assert len(fict) == 3  # one per class
    np.testing.assert_array_equal(ed.edited_weights_["index"], fict)
    np.testing.assert_allclose(edited_a["shift"], -np.log(0.7))
    np.testing.assert_allclose(ed.edited_weights_["shift"], -np.log(0.01))
    np.testing.assert_allclose(edited_a["edited"] - ed.edited_weights_["edited"],
                               np.log(0.7) - np.log(0.01), rtol=1e-5)
    np.testing.assert_array_equal(edited_a["original"], ed.edited_weights_["original"])
    assert (ed.predict(X) != pred_a).sum() > 10  # the edit changes predictions


def test_strength_zero_is_no_edit_and_one_removes_fictitious_exactly():
    X, y, s = _spurious_data(1500, 0.9, n_classes=3, n_values=2)
    ed = SingleWeightEditor(head=_head(X, y), strength=0).fit(X, y, spurious=s)
    hand = _pooled(ed, X)
    np.testing.assert_array_equal(ed.predict(X), ed.classes_[hand.argmax(1)])
    np.testing.assert_allclose(ed.decision_function(X), hand, rtol=1e-5, atol=1e-5)
    ed.set_params(strength=1.0)
    fict = np.flatnonzero(ed.fictitious_mask_)
    assert np.all(ed.edited_weights_["edited"] == -np.inf)
    removed = _pooled(ed, X, drop=fict)
    np.testing.assert_allclose(ed.predict_proba(X), softmax(removed, axis=1), atol=1e-5)


def test_strength_path_equals_set_params():
    X, y, s = _spurious_data(800, 0.9)
    ed = SingleWeightEditor(head=_head(X, y)).fit(X, y, spurious=s)
    strengths = [0.0, 0.5, "prior", 0.95, 1.0]
    for method in ("predict", "decision_function", "predict_proba"):
        path = ed.strength_path(X, strengths, method=method)
        for strength, row in zip(strengths, path):
            expected = getattr(ed.set_params(strength=strength), method)(X)
            np.testing.assert_array_equal(row, expected)
    assert ed.strength_path(X).shape == (len(strength_grid()), X.shape[0])


def test_one_subclass_per_class_is_a_plain_logistic_head():
    X, y, s = _spurious_data(800, 0.9)
    with pytest.warns(UserWarning, match=r"classes \[0, 1\] have no fictitious"):
        ed = SingleWeightEditor(strength=1.0).fit(X, y, spurious=np.zeros_like(y))
    assert ed.subclasses_ == [(0, 0), (1, 0)] and ed.fictitious_ == {}
    # nothing to edit: every strength gives the same scores, a linear logit
    np.testing.assert_array_equal(ed.decision_function(X),
                                  ed.set_params(strength=0.0).decision_function(X))
    np.testing.assert_allclose(ed.subclass_coef_[1], -ed.subclass_coef_[0])
    assert (ed.predict(X) == y).mean() > 0.8


def test_strength_grid_is_even_in_the_bias_shift():
    grid = strength_grid(9, max_shift=4.0, include_one=True)
    np.testing.assert_allclose(-np.log1p(-grid[:-1]), np.linspace(0, 4, 9), atol=1e-12)
    assert grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
    # fine near the log-odds of 95 % agreement, where an even grid in strength is coarse
    assert np.sum(np.abs(-np.log1p(-strength_grid()) - np.log(19)) < 0.5) >= 2


def test_inferred_subclasses_follow_the_heads_confidence():
    X, y, s = _spurious_data(1200, 0.9)
    head = _head(X[:600], y[:600])
    lr_proba = softmax(X[600:] @ np.vstack([-head[0], head[0]]).T / 2
                       + np.r_[-head[1], head[1]] / 2, axis=1)
    confident = lr_proba[np.arange(600), y[600:]] >= 0.8  # >= 0.5: correct
    ed = SingleWeightEditor(head=head, confidence=0.8).fit(X[600:], y[600:])
    assert ed.subclasses_ == [(0, "confident"), (0, "other"),
                              (1, "confident"), (1, "other")]
    assert ed.fictitious_ == {0: "confident", 1: "confident"}
    expected = [np.sum((y[600:] == c) & (confident == v))
                for c in (0, 1) for v in (True, False)]
    np.testing.assert_array_equal(ed.subclass_counts_, expected)
    np.testing.assert_array_equal(ed.prior_shift_, 0)  # no attribute, no prior


def test_multiclass_multivalue_string_labels_and_2d_attribute():
    X, y, s = _spurious_data(1500, 0.8, n_classes=3, n_values=4)
    names = np.array(["cat", "dog", "eel"])[y]
    values = np.array(["a", "b", "c", "d"])[s]
    ed = SingleWeightEditor(head=None, strength=0.5).fit(X, names, spurious=values)
    assert len(ed.subclasses_) == 12 and ed.subclasses_[0] == ("cat", "a")
    assert ed.fictitious_ == {"cat": "a", "dog": "b", "eel": "c"}
    assert set(ed.predict(X)) <= set(ed.classes_)
    assert (ed.predict(X) == names).mean() > 0.8
    two = np.c_[values, (X[:, 0] > 0).astype(int)]
    ed2 = SingleWeightEditor().fit(X, names, spurious=two)
    assert all(isinstance(v, tuple) and len(v) == 2 for _, v in ed2.subclasses_)
    assert ed2.fictitious_mask_.sum() == 3


def test_dtypes():
    X, y, s = _spurious_data(600, 0.9)
    ed = SingleWeightEditor().fit(X, y, spurious=s)
    assert ed.subclass_coef_.dtype == np.float32
    assert ed.decision_function(X).dtype == np.float32
    assert ed.predict_proba(X).dtype == np.float32
    ed64 = SingleWeightEditor().fit(X.astype(np.float64), y, spurious=s)
    assert ed64.subclass_coef_.dtype == np.float64
    assert ed64.decision_function(X.astype(np.float64)).dtype == np.float64
    assert (ed64.predict(X) == ed.predict(X)).mean() > 0.99


def test_errors_and_warnings():
    X, y, s = _spurious_data(600, 0.9)
    ed = SingleWeightEditor(strength=0.5).fit(X, y, spurious=s)
    ed.set_params(strength=1.5)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        ed.predict(X)
    with pytest.raises(ValueError, match="no `spurious` was given"):
        SingleWeightEditor(fictitious={0: 1}).fit(X, y)
    with pytest.raises(ValueError, match="absent from the fitting data"):
        SingleWeightEditor(fictitious={0: 7}).fit(X, y, spurious=s)
    with pytest.raises(ValueError, match=r"fictitious=fictitious_values\(y_train"):
        SingleWeightEditor(fictitious=(y, s)).fit(X, y, spurious=s)
    with pytest.raises(ValueError, match="method must be"):
        ed.strength_path(X, method="score")
    only = np.where(y == 0, 0, s)  # class 0 has a single sub-class: nothing to edit
    with pytest.warns(UserWarning, match=r"classes \[0\] have no fictitious"):
        ed = SingleWeightEditor().fit(X, y, spurious=only)
    assert list(ed.fictitious_) == [1]


# ------------------------------------------------------------- export, search
class _Net(torch.nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, n_out)

    def forward(self, x):
        return self.fc(self.body(x))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("strength", [0.9, 1.0])
def test_replace_head_predicts_like_the_estimator(n_classes, strength):
    X, y, s = _spurious_data(1000, 0.9, n_classes=n_classes)
    torch.manual_seed(0)
    net = _Net(n_classes)
    with torch.no_grad():
        Z = net.body(torch.as_tensor(X)).numpy()
    ed = SingleWeightEditor(head=net.fc, strength=strength).fit(Z, y, spurious=s)
    patched = replace_head(net, "fc", ed)
    assert isinstance(patched.fc[0], torch.nn.Linear)
    assert patched.fc[0].out_features == len(ed.subclasses_)
    with torch.no_grad():
        logits = patched(torch.as_tensor(X)).numpy()
    assert logits.shape == (len(X), n_classes)
    np.testing.assert_array_equal(ed.classes_[logits.argmax(1)], ed.predict(Z))
    scores = ed.decision_function(Z)
    if n_classes == 2:
        ours, ref = logits[:, 1] - logits[:, 0], scores
    else:
        ours = logits - logits.max(1, keepdims=True)
        ref = scores - scores.max(1, keepdims=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert torch.equal(patched.body[0].weight, net.body[0].weight)


def test_grid_search_fits_the_subclass_head_once_per_fold(count_fits):
    X, y, s = _spurious_data(500, 0.8)  # every group in every test fold
    grid = {"strength": list(strength_grid(20))}
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    results = {}
    with sklearn.config_context(enable_metadata_routing=True):
        for cache in (True, False):
            count_fits.clear()
            editor_module._FIT_CACHE.clear()
            editor = SingleWeightEditor(head=_head(X, y), memory=cache)
            search = GridSearchCV(editor, grid, scoring=worst_group_scorer, cv=cv)
            search.fit(X, y, spurious=s)
            results[cache] = (len(count_fits), search.cv_results_["mean_test_score"])
    assert results[True][0] == 5 + 1  # one per fold, one refit
    assert results[False][0] == 20 * 5 + 1
    np.testing.assert_array_equal(results[True][1], results[False][1])


def test_cache_hits_only_identical_fits(count_fits):
    X, y, s = _spurious_data(500, 0.9)
    a = SingleWeightEditor(strength=0.2).fit(X, y, spurious=s)
    a.subclass_coef_[:] = 0  # mutating a fitted estimator must not reach the cache
    b = SingleWeightEditor(strength=0.7).fit(X, y, spurious=s)
    assert len(count_fits) == 1 and np.abs(b.subclass_coef_).max() > 0
    SingleWeightEditor(C=0.5).fit(X, y, spurious=s)
    X2 = X.copy()
    X2[0, 0] += 1
    SingleWeightEditor().fit(X2, y, spurious=s)
    SingleWeightEditor().fit(X, y, spurious=s[::-1])
    SingleWeightEditor(memory=False).fit(X, y, spurious=s)
    assert len(count_fits) == 5


def test_cache_hit_hands_each_estimator_its_own_copies(count_fits):
    X, y, s = _spurious_data(500, 0.9, n_classes=3)
    a = SingleWeightEditor().fit(X, y, spurious=s)
    b = SingleWeightEditor(strength=0.5).fit(X, y, spurious=s)
    assert len(count_fits) == 1  # b is a hit
    fitted = [k for k in vars(a) if k.endswith("_") and not k.startswith("_")]
    assert "subclasses_" in fitted and "fictitious_" in fitted
    for name in fitted:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, (list, dict, np.ndarray)):
            assert va is not vb, name
        if isinstance(va, np.ndarray):
            assert not np.shares_memory(va, vb), name
    a.subclasses_.append(("x", "y"))  # mutating one estimator reaches no other
    a.fictitious_[0] = "z"
    a.fictitious_mask_[:] = False
    c = SingleWeightEditor().fit(X, y, spurious=s)
    assert len(count_fits) == 1
    for other in (b, c):
        assert len(other.subclasses_) == 9 and other.fictitious_[0] == 0
        assert other.fictitious_mask_.sum() == 3
    np.testing.assert_array_equal(b.decision_function(X),
                                  c.set_params(strength=0.5).decision_function(X))


def test_cache_key_holds_everything_the_fit_reads(count_fits):
    X, y, s = _spurious_data(400, 0.9)
    head = _head(X, y)
    fits = [
        lambda: SingleWeightEditor(head=head),
        lambda: SingleWeightEditor(head=(head[0] * 2, head[1], head[2])),
        lambda: SingleWeightEditor(head=head, fictitious="data"),
        lambda: SingleWeightEditor(head=head, fictitious={0: 1, 1: 0}),
        lambda: SingleWeightEditor(head=head, standardize=False),
        lambda: SingleWeightEditor(head=head, tol=1e-3),
        lambda: SingleWeightEditor(head=head, max_iter=50),
    ]
    for make in fits:
        make().fit(X, y, spurious=s)
    SingleWeightEditor(head=head, confidence=0.9).fit(X, y)
    SingleWeightEditor(head=head, confidence=0.5).fit(X, y)
    SingleWeightEditor(head=head).fit(X.astype(np.float64), y, spurious=s)
    assert len(count_fits) == len(fits) + 3
    for make in fits:  # all hits now, strength and memory aside
        make().set_params(strength=0.3, memory=True).fit(X, y, spurious=s)
    assert len(count_fits) == len(fits) + 3
    SingleWeightEditor(head=head, memory=None).fit(X, y, spurious=s)
    assert len(count_fits) == len(fits) + 4


def test_fictitious_values_is_the_mapping_fictitious_takes():
    X, y, s = _spurious_data(2000, 0.9, n_classes=3)
    assert fictitious_values(y, s) == {0: 0, 1: 1, 2: 2}
    names = np.array(["cat", "dog", "eel"])[y]
    values = np.array(["a", "b", "c"])[s]
    assert fictitious_values(names, values) == {"cat": "a", "dog": "b", "eel": "c"}
    two = fictitious_values(y, np.c_[s, np.zeros_like(s)])
    assert two == {0: (0, 0), 1: (1, 0), 2: (2, 0)}
    data = SingleWeightEditor(fictitious="data").fit(X, y, spurious=s)
    named = SingleWeightEditor(fictitious=fictitious_values(y, s)).fit(X, y, spurious=s)
    assert data.fictitious_ == named.fictitious_
    np.testing.assert_array_equal(data.decision_function(X), named.decision_function(X))
    with pytest.warns(UserWarning, match="equally associated") as record:
        fictitious_values([0, 0, 1, 1], [0, 1, 0, 1])
    assert record[0].filename == __file__  # points at the caller
    with pytest.raises(ValueError, match="rows"):
        fictitious_values(y, s[:-1])


def test_on_the_template_with_the_shared_parameters(monkeypatch):
    import inspect

    from sklearn_spur._core import template
    from sklearn_spur._core.heads import as_linear_head
    from sklearn_spur.utils.discovery import requirements

    assert issubclass(SingleWeightEditor, template.LastLayerClassifier)
    assert "fit" not in vars(SingleWeightEditor)  # the template's fit
    params = list(inspect.signature(SingleWeightEditor).parameters.values())
    assert params[0].name == "head"
    assert all(p.kind is p.KEYWORD_ONLY for p in params)
    ed = SingleWeightEditor()
    assert (ed.max_iter, ed.tol, ed.memory) == (template.MAX_ITER, template.TOL, True)
    for name, constraint in template.LastLayerClassifier._parameter_constraints.items():
        assert SingleWeightEditor._parameter_constraints[name] is constraint
    assert requirements(SingleWeightEditor) == {
        "group_labels": "optional", "label_free": True, "head": "optional",
        "fit_on": "training or validation"}
    # without spurious, the sub-classes come from the template's shared evidence
    calls = []
    evidence = refit_module.head_evidence
    monkeypatch.setattr(refit_module, "head_evidence",
                        lambda *a: calls.append(1) or evidence(*a))
    X, y, _ = _spurious_data(400, 0.9)
    ed = SingleWeightEditor(head=_head(X, y), memory=False).fit(X, y)
    assert len(calls) == 1
    assert not hasattr(ed, "coef_")  # sub-class rows go by their own name
    with pytest.raises(TypeError, match="log-sum-exp"):
        as_linear_head(ed)


# ---------------------------------------------------- effect sizes (waterdigits)
@pytest.fixture(scope="module")
def train_fits(waterdigits, waterdigits3):
    """The sub-class head fitted on the (spuriously correlated) training split."""
    with threadpool_limits(limits=1, user_api="blas"):
        return {len(b.classes): SingleWeightEditor(head=b.head, strength=0.0).fit(
            b.X_train, b.y_train, spurious=b.spurious_train)
            for b in (waterdigits, waterdigits3)}


@pytest.fixture(scope="module")
def baselines(waterdigits, waterdigits3):
    """Test WGA of the original head and of DFR (fitted on validation), per dataset."""
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, b in (("waterdigits", waterdigits), ("waterdigits3", waterdigits3)):
            erm = ERMClassifier(head=b.head).fit(b.X_val, b.y_val)
            dfr = DFRClassifier(random_state=0)
            dfr.fit(b.X_val, b.y_val, spurious=b.spurious_val)
            out[name] = {"erm": _wga(b, "test", erm.predict(b.X_test)),
                         "dfr": _wga(b, "test", dfr.predict(b.X_test))}
    return out


def _tuned_on_val(editor, b):
    grid = strength_grid(41)
    wga_val = [_wga(b, "val", p) for p in editor.strength_path(b.X_val, grid)]
    wga_test = [_wga(b, "test", p) for p in editor.strength_path(b.X_test, grid)]
    best = int(np.argmax(wga_val))
    return grid[best], wga_test[0], wga_test[best]


def test_edit_fitted_on_training_split_lifts_wga_far_above_strength_zero(
        waterdigits, train_fits, baselines):
    b = waterdigits
    ed = train_fits[2]
    erm = baselines["waterdigits"]["erm"]
    strength, wga_0, wga_tuned = _tuned_on_val(ed, b)
    # The data are the same on every machine (shipped weights, random_state 0).
    # Seeds 0-4 of this configuration: |wga_0 - erm| 0.073, 0.033, 0.051, 0.027,
    # 0.111 (mean 0.059, sd 0.034).
    assert abs(wga_0 - erm) <= 0.15, (erm, wga_0)  # unedited: near ERM
    # Gain, seeds 0-4: +0.372, +0.346, +0.332, +0.250, +0.314 (mean 0.323, sd
    # 0.046): the threshold is 2 sd below the mean, so it holds for any seed.
    assert wga_tuned >= wga_0 + 0.22, (wga_0, wga_tuned)
    # The shift that works is of the order of the prior's log-odds, log(0.95 / 0.05):
    # 1.49 log(19) here. Seed-specific: seeds 1, 3 and 4 pick the grid's largest
    # strength (2.72 log(19)), seed 2 2.11 log(19).
    assert np.log(19) - 1 <= -np.log1p(-strength) <= 2.5 * np.log(19), strength
    prior = _wga(b, "test", ed.set_params(strength="prior").predict(b.X_test))
    ed.set_params(strength=0.0)
    # No tuning at all: +0.30 here; seeds 0-4 +0.30, +0.18, +0.25, +0.12, +0.15
    # (mean 0.20, sd 0.07), so this threshold holds on this dataset only.
    assert prior >= wga_0 + 0.25, prior


def test_edit_fitted_on_training_split_multiclass(waterdigits3, train_fits):
    _, wga_0, wga_tuned = _tuned_on_val(train_fits[3], waterdigits3)
    # +0.305 here, on data that are the same on every machine; seeds 0-4:
    # +0.31, +0.10, +0.10, +0.08, +0.32 (mean 0.18, sd 0.12): seed-specific.
    assert wga_tuned >= wga_0 + 0.15, (wga_0, wga_tuned)


def test_strength_zero_reproduces_the_unedited_subclass_head(waterdigits, train_fits):
    ed = train_fits[2]
    X = waterdigits.X_test
    hand = _pooled(ed, X)
    np.testing.assert_array_equal(ed.predict(X), ed.classes_[hand.argmax(1)])
    np.testing.assert_allclose(ed.decision_function(X), hand[:, 1] - hand[:, 0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fixture", ["waterdigits", "waterdigits3"])
def test_fitted_on_validation_with_tuned_strength_matches_dfr(fixture, request,
                                                              baselines):
    b = request.getfixturevalue(fixture)
    dfr = baselines[fixture]["dfr"]
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(SingleWeightEditor(head=b.head),
                              {"strength": list(strength_grid(20))},
                              scoring=worst_group_scorer,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0))
        search.fit(b.X_val, b.y_val, spurious=b.spurious_val)
    ours = _wga(b, "test", search.predict(b.X_test))
    # ours - dfr, seeds 0-4: two classes +0.009 (here), 0.000, +0.011, +0.004,
    # -0.085 (mean -0.012, sd 0.041); three classes +0.002 (here), 0.000, +0.006,
    # -0.017, +0.012 (mean 0.001, sd 0.011). The bound sits 2 sd under the mean:
    # with other CPU kernels the two-class gap here was -0.053 (C chosen apart).
    slack = {"waterdigits": 0.10, "waterdigits3": 0.03}[fixture]
    assert ours >= dfr - slack, (dfr, ours)


@pytest.mark.parametrize("fixture", ["waterdigits", "waterdigits3"])
def test_without_spurious_closes_60_percent_of_the_gap_to_dfr(fixture, request,
                                                              baselines):
    b = request.getfixturevalue(fixture)
    erm, dfr = baselines[fixture]["erm"], baselines[fixture]["dfr"]
    ed = SingleWeightEditor(head=b.head).fit(b.X_val, b.y_val)  # no annotation anywhere
    ours = _wga(b, "test", ed.predict(b.X_test))
    # Seeds 0-4: two classes 1.04 (here), 1.00, 1.03, 1.03, 1.00 (mean 1.02, sd
    # 0.02); three classes 1.01 (here), 0.83, 0.93, 0.92, 1.01 (mean 0.94, sd 0.08).
    assert (ours - erm) / (dfr - erm) >= 0.60, (erm, ours, dfr)


def test_auto_strength_without_spurious(label_free_digits, mean_test_wga):
    # Without spurious the sub-classes are the inferred groups (infer_groups,
    # "discriminant"); fictitious: the head's confident majority. Correlated
    # held-out data, test WGA, seeds 0-4, ERM 0.281 0.445 0.336 0.416 0.257:
    # "prior" (the default) 0.795 0.790 0.732 0.799 0.801 (gain +0.44, sd 0.09;
    # DFR with the true groups 0.781 0.817 0.667 0.768 0.761); "auto" 0.797
    # 0.766 0.704 0.768 0.763 (gain +0.41, sd 0.09); the earlier confident /
    # other split (confidence=0.5) 0.308 0.365 0.208 0.392 0.308. Balanced:
    # "prior" 0.821 0.842 0.746 0.823 0.810, confidence=0.5 0.827 0.838 0.792
    # 0.825 0.808 (difference -0.010, sd 0.021), "auto" 0.768 0.839 0.694 0.823
    # 0.746.
    d = label_free_digits
    erm = np.mean([d[s, 0.95].wga_erm for s in (0, 1, 2)])
    dfr = np.mean([d[s, 0.95].wga_dfr for s in (0, 1, 2)])
    prior = mean_test_wga(0.95, lambda b: SingleWeightEditor(head=b.head))
    assert prior >= erm + 0.25 and prior >= dfr - 0.05, (prior, erm, dfr)
    bal = mean_test_wga(None, lambda b: SingleWeightEditor(head=b.head))
    old = mean_test_wga(None, lambda b: SingleWeightEditor(head=b.head, confidence=0.5))
    assert bal >= old - 0.04, (bal, old)
    wga = []
    for seed in (0, 1, 2):
        b = d[seed, 0.95]
        ed = SingleWeightEditor(head=b.head, strength="auto", random_state=0)
        ed.fit(b.X_val, b.y_val)
        assert ed.strength_ in ed.strength_scores_
        assert ed.subclasses_ == [(0, 0), (0, 1), (1, 0), (1, 1)]
        wga.append(worst_group_accuracy(b.y_test, ed.predict(b.X_test),
                                        spurious=b.spurious_test))
    assert np.mean(wga) >= erm + 0.20, (wga, erm)
    path = ed.strength_path(b.X_test[:50], [ed.strength_])[0]
    np.testing.assert_array_equal(path, ed.predict(b.X_test[:50]))
