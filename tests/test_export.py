"""Heads in every form, and the way back into torch (to_torch, replace_head)."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_spur import DFRClassifier, ERMClassifier, replace_head, to_torch
from sklearn_spur._core.heads import resolve_head
from sklearn_spur.exceptions import UnfittedHeadError


def _data(n_classes=2, n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X *= rng.uniform(0.5, 3, d).astype(np.float32)
    cuts = np.quantile(X[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1])
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], cuts)
    return X, y


class Net(torch.nn.Module):
    def __init__(self, d_in=5, d_emb=6, n_out=2):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(d_in, d_emb), torch.nn.ReLU())
        self.fc = torch.nn.Linear(d_emb, n_out)

    def forward(self, x):
        return self.fc(self.body(x))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_head_form_gives_same_logits(n_classes):
    X, y = _data(n_classes)
    lr = LogisticRegression().fit(X, y)
    layer = to_torch(lr)
    forms = [lr, FrozenEstimator(lr), layer, (layer.weight, layer.bias),
             (lr.coef_, lr.intercept_, lr.classes_)]
    preds = [resolve_head(h, X, y).predict(X) for h in forms]
    for p in preds:
        np.testing.assert_array_equal(p, lr.predict(X))
    proba = resolve_head(layer, X, y).predict_proba(X)
    np.testing.assert_allclose(proba, lr.predict_proba(X), atol=1e-5)


def test_none_head_fits_erm():
    X, y = _data()
    head = resolve_head(None, X, y)
    assert (head.predict(X) == y).mean() > 0.8


def test_unfitted_head_after_clone_says_how_to_freeze():
    X, y = _data()
    lr = LogisticRegression().fit(X, y)
    est = ERMClassifier(head=lr)
    with pytest.raises(UnfittedHeadError, match=r"FrozenEstimator\(fitted_head\)"):
        clone(est).fit(X, y)
    # frozen and torch heads survive cloning
    for head in (FrozenEstimator(lr), to_torch(lr)):
        pred = clone(ERMClassifier(head=head)).fit(X, y).predict(X)
        np.testing.assert_array_equal(pred, lr.predict(X))


def test_head_shape_and_classes_checked():
    X, y = _data()
    with pytest.raises(ValueError, match="takes 4 features but X has 6"):
        resolve_head((np.ones((2, 4)), np.zeros(2)), X, y)
    with pytest.raises(ValueError, match="no output for"):
        resolve_head(torch.nn.Linear(6, 2), X, np.where(y == 1, 7, 0))
    with pytest.raises(ValueError, match="bias has 3"):
        resolve_head((np.ones((2, 6)), np.zeros(3)), X, y)
    with pytest.raises(TypeError, match="nn.Linear"):
        resolve_head(torch.nn.ReLU(), X, y)
    with pytest.raises(ValueError, match="NaN"):
        resolve_head((np.full((2, 6), np.nan), np.zeros(2)), X, y)


def test_single_output_torch_head_is_binary_logit():
    X, y = _data()
    lr = LogisticRegression().fit(X, y)
    layer = torch.nn.Linear(6, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(lr.coef_))
        layer.bias.copy_(torch.as_tensor(lr.intercept_))
    np.testing.assert_array_equal(resolve_head(layer, X, y).predict(X), lr.predict(X))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(),
    lambda: RidgeClassifier(),
    lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.5)),
    lambda: make_pipeline(StandardScaler(), PCA(4), LogisticRegression()),
    lambda: make_pipeline("passthrough", DFRClassifier(n_fits=2, random_state=0)),
    lambda: ERMClassifier(),
])
def test_to_torch_parity(make, n_classes):
    X, y = _data(n_classes)
    est = make()
    if "dfrclassifier" in getattr(est, "named_steps", {}):
        est.fit(X, y, dfrclassifier__spurious=(X[:, 2] > 0).astype(int))
    else:
        est.fit(X, y)
    module = to_torch(est)
    assert module.out_features == n_classes  # 2 outputs for 2 classes
    logits = module(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_array_equal(est.classes_[logits.argmax(1)], est.predict(X))
    scores = est.decision_function(X)
    if n_classes == 2:
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], scores, rtol=1e-4,
                                   atol=1e-4)
    else:
        ref = scores - scores.mean(1, keepdims=True)
        np.testing.assert_allclose(logits - logits.mean(1, keepdims=True), ref,
                                   rtol=1e-4, atol=1e-4)


def test_to_torch_rejects_non_affine_pipeline():
    from sklearn.preprocessing import PolynomialFeatures

    X, y = _data()
    est = make_pipeline(PolynomialFeatures(2), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="not an affine map"):
        to_torch(est)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_replace_head_parity_and_no_mutation(n_classes):
    torch.manual_seed(0)
    net = Net(n_out=n_classes)
    before = copy.deepcopy(net.state_dict())
    inputs = torch.randn(400, 5)
    with torch.no_grad():
        Z = net.body(inputs).numpy()
    margin = Z[:, 0] - Z[:, 1]
    y = np.digitize(margin, np.quantile(margin, np.linspace(0, 1, n_classes + 1)[1:-1]))
    est = make_pipeline(StandardScaler(), LogisticRegression()).fit(Z, y)
    patched = replace_head(net, "fc", est)
    # the user's model is untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert patched is not net and isinstance(patched, Net)
    with torch.no_grad():
        out = patched(inputs).numpy()
    np.testing.assert_array_equal(out.argmax(1), est.predict(Z))
    np.testing.assert_allclose(
        torch.softmax(torch.as_tensor(out), 1).numpy(), est.predict_proba(Z), atol=1e-5)


def test_replace_head_errors():
    net = Net()
    Z = np.random.default_rng(0).normal(size=(50, 4))
    est = LogisticRegression().fit(Z, (Z[:, 0] > 0).astype(int))
    with pytest.raises(ValueError, match="takes 6 features .* takes 4"):
        replace_head(net, "fc", est)
    with pytest.raises(ValueError, match="no submodule 'head'.*'fc'"):
        replace_head(net, "head", est)
    with pytest.raises(TypeError, match="torch.nn.Module or a fitted skorch"):
        replace_head(object(), "fc", est)


def test_replace_head_in_nested_module_and_skorch():
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    clf = NeuralNetClassifier(Net, max_epochs=2, lr=0.1, train_split=None, verbose=0,
                              criterion=torch.nn.CrossEntropyLoss).fit(X, y)
    with torch.no_grad():
        Z = clf.module_.body(torch.as_tensor(X)).numpy()
    est = LogisticRegression().fit(Z, 1 - y)  # a visibly different head
    patched = replace_head(clf, "fc", est)
    assert patched is not clf
    np.testing.assert_array_equal(patched.predict(X), est.predict(Z))
    assert not np.array_equal(clf.predict(X), patched.predict(X))


def test_grid_search_clones_torch_head_fine():
    X, y = _data()
    layer = to_torch(LogisticRegression().fit(X, y))
    gs = GridSearchCV(ERMClassifier(head=layer), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert gs.best_score_ > 0.8


# ------------------------------------------------- issue 14: no silent wrong answer
def _offset_data(n_classes=2, seed=0):
    X, y = _data(n_classes, seed=seed)
    return (X.astype(np.float64) + 5.0), y  # far from zero mean: centring shows


@pytest.mark.parametrize("with_std", [True, False])
@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_to_torch_honours_standard_scaler_flags(with_mean, with_std, n_classes):
    X, y = _offset_data(n_classes)
    pipe = make_pipeline(StandardScaler(with_mean=with_mean, with_std=with_std),
                         LogisticRegression(max_iter=5000)).fit(X, y)
    logits = to_torch(pipe, dtype=torch.float64)(torch.as_tensor(X)).detach().numpy()
    _assert_same_scores(logits, pipe.decision_function(X), atol=1e-5)


def _assert_same_scores(logits, scores, atol):
    if scores.ndim == 1:
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], scores, rtol=0,
                                   atol=atol)
    else:
        np.testing.assert_allclose(logits - logits.mean(1, keepdims=True),
                                   scores - scores.mean(1, keepdims=True), rtol=0,
                                   atol=atol)


def _affine_steps():
    from sklearn.decomposition import IncrementalPCA, TruncatedSVD
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler

    return {
        "pca": lambda: PCA(4),
        "pca-whiten": lambda: PCA(4, whiten=True),
        "pca-whiten-full": lambda: PCA(whiten=True),
        "ipca-whiten": lambda: IncrementalPCA(4, whiten=True),
        "svd": lambda: TruncatedSVD(3, random_state=0),
        "robust": lambda: RobustScaler(),
        "robust-nocenter": lambda: RobustScaler(with_centering=False),
        "robust-noscale": lambda: RobustScaler(with_scaling=False),
        "maxabs": lambda: MaxAbsScaler(),
        "minmax": lambda: MinMaxScaler((-2, 3)),
        "nested": lambda: make_pipeline(StandardScaler(with_mean=False), PCA(5)),
        "frozen": lambda: FrozenEstimator(StandardScaler().fit(_offset_data()[0])),
    }


@pytest.mark.parametrize("step", list(_affine_steps()))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_to_torch_parity_for_every_affine_step(step, n_classes):
    X, y = _offset_data(n_classes)
    pipe = make_pipeline(_affine_steps()[step](), LogisticRegression(max_iter=5000))
    pipe.fit(X, y)
    logits = to_torch(pipe, dtype=torch.float64)(torch.as_tensor(X)).detach().numpy()
    _assert_same_scores(logits, pipe.decision_function(X), atol=1e-5)


@pytest.mark.parametrize("step", ["minmax-clip", "normalizer", "log"])
def test_to_torch_refuses_steps_that_are_not_affine(step):
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, Normalizer

    make = {"minmax-clip": lambda: MinMaxScaler(clip=True), "normalizer": Normalizer,
            "log": lambda: FunctionTransformer(np.abs)}[step]
    X, y = _offset_data()
    pipe = make_pipeline(make(), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match=r"is not an affine map.*pipe\[1:\]"):
        to_torch(pipe)


def test_replace_head_refuses_empty_unknown_and_non_linear_layers():
    net = Net()
    Z = np.random.default_rng(0).normal(size=(50, 6))
    est = LogisticRegression().fit(Z, (Z[:, 0] > 0).astype(int))
    with pytest.raises(ValueError, match=r"got ''.*linear layers are \['body.0', 'fc'"):
        replace_head(net, "", est)
    with pytest.raises(ValueError, match="no submodule 'fc2'"):
        replace_head(net, "fc2", est)
    with pytest.raises(TypeError, match=r"layer 'body.1' is a ReLU, not an nn.Linear"):
        replace_head(net, "body.1", est)
    with pytest.raises(TypeError, match=r"layer 'body' is a Sequential, not an nn.Li"):
        replace_head(net, "body", est)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 1), torch.nn.Flatten())
    with pytest.raises(TypeError, match="is a Conv2d, not an nn.Linear"):
        replace_head(conv, "0", est)


def test_replace_head_refuses_other_outputs_or_classes_unless_not_strict():
    torch.manual_seed(0)
    net = Net(n_out=3)
    Z = np.random.default_rng(0).normal(size=(90, 6))
    y = np.digitize(Z[:, 0], [-0.5, 0.5])
    lr2 = LogisticRegression().fit(Z, (y > 0).astype(int))
    with pytest.raises(ValueError, match=r"'fc' has 3 output\(s\).*estimator has 2"):
        replace_head(net, "fc", lr2)
    lr_other = LogisticRegression().fit(Z, np.array([0, 1, 5])[y])
    with pytest.raises(ValueError, match=r"missing from the estimator: \[2\]; not"):
        replace_head(net, "fc", lr_other)
    patched = replace_head(net, "fc", lr2, strict=False)  # the documented opt-in
    assert patched.fc.out_features == 2 and net.fc.out_features == 3
    with pytest.raises(ValueError, match="takes 6 features but the fitted .* takes 4"):
        replace_head(net, "fc", LogisticRegression().fit(Z[:, :4], y), strict=False)


def test_replace_head_orders_outputs_by_the_models_classes():
    torch.manual_seed(0)
    net = Net(n_out=3)
    Z = np.random.default_rng(0).normal(size=(120, 6))
    names = np.array(["cat", "dog", "emu"])[np.digitize(Z[:, 0], [-0.5, 0.5])]
    lr = LogisticRegression().fit(Z, names)
    with pytest.raises(ValueError, match=r"Pass classes=\[label of output 0"):
        replace_head(net, "fc", lr)
    patched = replace_head(net, "fc", lr, classes=["emu", "cat", "dog"])
    out = patched.fc(torch.as_tensor(Z, dtype=torch.float32)).detach().numpy()
    proba = torch.softmax(torch.as_tensor(out), 1).numpy()
    np.testing.assert_allclose(proba, lr.predict_proba(Z)[:, [2, 0, 1]], atol=1e-5)


def test_replace_head_single_logit_layer_gets_the_positive_logit():
    lin = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(6, 1))
    net = torch.nn.Sequential(torch.nn.Identity(), lin).eval()
    Z = np.random.default_rng(0).normal(size=(80, 6))
    lr = LogisticRegression().fit(Z, (Z[:, 0] > 0).astype(int))
    patched = replace_head(net, "1", lr, dtype=torch.float64)  # the Linear inside
    assert isinstance(patched[1][0], torch.nn.Dropout)
    out = patched(torch.as_tensor(Z)).detach().numpy()[:, 0]
    np.testing.assert_allclose(out, lr.decision_function(Z), atol=1e-10)


def test_replace_head_of_a_search_or_an_extractor_pipeline_names_the_fix():
    from sklearn_spur import TorchFeatureExtractor

    torch.manual_seed(0)
    net = Net()
    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with torch.no_grad():
        Z = net.body(torch.as_tensor(X)).numpy()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2).fit(Z, y)
    with pytest.raises(TypeError, match=r"search\.best_estimator_"):
        replace_head(net, "fc", search)
    pipe = make_pipeline(TorchFeatureExtractor(net, progress=False, memory=None),
                         StandardScaler(), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match=r"Extractor.*`pipe\[1:\]`.*pipe\[-1\]"):
        replace_head(net, "fc", pipe)
    patched = replace_head(net, "fc", pipe[1:])
    np.testing.assert_array_equal(
        patched(torch.as_tensor(X)).argmax(1).numpy(), pipe.predict(X))


@pytest.mark.parametrize("form", ["linear", "tuple", "tensors"])
def test_two_output_head_gives_the_binary_convention(form):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import cross_val_score

    X, y = _data()
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 2)
    head = {"linear": layer, "tuple": (layer.weight.detach().numpy(),
                                       layer.bias.detach().numpy()),
            "tensors": (layer.weight, layer.bias)}[form]
    resolved = resolve_head(head, X, y)
    W, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    np.testing.assert_allclose(resolved.coef, (W[1] - W[0])[None], rtol=1e-6)
    np.testing.assert_allclose(resolved.intercept, [b[1] - b[0]], rtol=1e-6)
    np.testing.assert_array_equal(resolved.full()[0], W)  # the per-class rows
    erm = ERMClassifier(head=head).fit(X, y)
    scores = erm.decision_function(X)
    assert scores.shape == (len(X),)
    np.testing.assert_allclose(scores, X @ (W[1] - W[0]) + b[1] - b[0], rtol=1e-5,
                               atol=1e-5)
    auc = cross_val_score(ERMClassifier(head=head), X, y, cv=3, scoring="roc_auc")
    assert np.isfinite(auc).all()
    cal = CalibratedClassifierCV(FrozenEstimator(erm)).fit(X, y)
    assert cal.predict_proba(X).shape == (len(X), 2)
    assert to_torch(erm).out_features == 2


def test_unsorted_classes_are_sorted_and_scorers_read_the_right_column():
    from scipy.special import softmax
    from sklearn.metrics import get_scorer, log_loss, roc_auc_score

    X, y01 = _data()
    y = np.array(["dog", "cat"])[y01]
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(2, 6)), rng.normal(size=2)
    erm = ERMClassifier(head=(W, b, ["dog", "cat"])).fit(X, y)
    assert erm.classes_.tolist() == ["cat", "dog"]
    proba = softmax(X.astype(np.float64) @ W.T + b, axis=1)  # columns: dog, cat
    p_dog = proba[:, 0]
    np.testing.assert_allclose(erm.predict_proba(X)[:, 1], p_dog, rtol=1e-4, atol=1e-6)
    auc = get_scorer("roc_auc")(erm, X, y)
    np.testing.assert_allclose(auc, roc_auc_score(y == "dog", p_dog), rtol=1e-6)
    nll = get_scorer("neg_log_loss")(erm, X, y)
    hand = log_loss(y == "dog", p_dog)
    np.testing.assert_allclose(-nll, hand, rtol=1e-4)
    # a single row is the logit of classes[1] ("cat" here): sorted, it changes sign
    one = ERMClassifier(head=(W[1:] - W[:1], b[1:] - b[:1], ["dog", "cat"])).fit(X, y)
    np.testing.assert_allclose(one.predict_proba(X)[:, 1], p_dog, rtol=1e-4, atol=1e-6)
    # three classes out of order: the rows follow their labels
    W3, b3 = rng.normal(size=(3, 6)), rng.normal(size=3)
    y3 = np.array([2, 0, 1])[np.argmax(X @ W3.T + b3, 1)]
    erm3 = ERMClassifier(head=(W3, b3, [2, 0, 1])).fit(X, y3)
    assert erm3.classes_.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(erm3.predict(X), y3)


@pytest.mark.parametrize("classes", [["a", "a"], [1, 1, 2], [0.0, np.nan]])
def test_duplicate_or_missing_class_labels_are_refused(classes):
    W = np.ones((len(classes), 6))
    with pytest.raises(ValueError, match="must be distinct labels, not NaN"):
        resolve_head((W, np.zeros(len(classes)), classes))
