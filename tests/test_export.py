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
    X = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.5, 3, d).astype(np.float32)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.quantile(X[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1]))
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
    if isinstance(est, DFRClassifier) or "dfrclassifier" in getattr(est, "named_steps", {}):
        est.fit(X, y, dfrclassifier__spurious=(X[:, 2] > 0).astype(int))
    else:
        est.fit(X, y)
    module = to_torch(est)
    assert module.out_features == n_classes  # 2 outputs for 2 classes
    logits = module(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_array_equal(est.classes_[logits.argmax(1)], est.predict(X))
    scores = est.decision_function(X)
    if n_classes == 2:
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], scores, rtol=1e-4, atol=1e-4)
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
    y = np.digitize(Z[:, 0] - Z[:, 1], np.quantile(Z[:, 0] - Z[:, 1],
                                                    np.linspace(0, 1, n_classes + 1)[1:-1]))
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
