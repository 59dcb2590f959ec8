"""Persistence of torch heads (skops, pickle) and the adversarial audit of the
head readers and the way back (issue 14): every case ends in a correct result
or in a clear error that names the argument and the fix."""

import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from sklearn_spur import (
    ERMClassifier,
    NeuronTuner,
    RRClArCClassifier,
    SingleWeightEditor,
    replace_head,
    to_torch,
)
from sklearn_spur._core.heads import LinearHead, resolve_head
from sklearn_spur._core.persist import decode_state, encode_state

sio = pytest.importorskip("skops.io")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(80, 6)).astype(np.float32)
Y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
S = (X[:, 2] > 0).astype(int)
W2, B2 = RNG.normal(size=(2, 6)), RNG.normal(size=2)


def _linear(w=W2, b=B2, dtype=torch.float32, bias=True):
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w))
        if bias:
            layer.bias.copy_(torch.as_tensor(b))
    return layer


# ------------------------------------------------------------------ persistence
HEAD_FORMS = {
    "linear": lambda: _linear(),
    "linear-bf16-nobias": lambda: _linear(dtype=torch.bfloat16, bias=False),
    "tensors-grad": lambda: (torch.tensor(W2, requires_grad=True), torch.tensor(B2)),
    "arrays": lambda: (W2, B2),
    "arrays-classes": lambda: (W2, B2, np.array(["dog", "cat"])),
}
ESTIMATORS = {
    "erm": lambda h: ERMClassifier(head=h),
    "rrclarc": lambda h: RRClArCClassifier(head=h),
    "editor": lambda h: SingleWeightEditor(head=h, cache=False),
    "neurontune": lambda h: NeuronTuner(head=h, random_state=0),
}


def _fit(est, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(est, NeuronTuner):
            return est.fit(np.abs(X), y)
        if isinstance(est, ERMClassifier):
            return est.fit(X, y)
        return est.fit(X, y, spurious=S)


def _same_head(a, b):
    if isinstance(a, torch.nn.Linear):
        assert type(b) is torch.nn.Linear
        assert a.weight.dtype == b.weight.dtype and a.training == b.training
        assert torch.equal(a.weight, b.weight)
        assert (a.bias is None) == (b.bias is None)
        assert a.bias is None or torch.equal(a.bias, b.bias)
    elif isinstance(a, tuple):
        assert type(b) is tuple and len(a) == len(b)
        for u, v in zip(a, b):
            if isinstance(u, torch.Tensor):
                assert isinstance(v, torch.Tensor) and u.dtype == v.dtype
                assert u.requires_grad == v.requires_grad and torch.equal(u, v)
            else:
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("est_id,form", [(e, "linear") for e in ESTIMATORS]
                         + [("erm", f) for f in HEAD_FORMS if f != "linear"])
def test_skops_round_trip_of_torch_heads_trusts_only_the_package(est_id, form):
    y = np.array(["dog", "cat"])[Y] if form == "arrays-classes" else Y
    est = _fit(ESTIMATORS[est_id](HEAD_FORMS[form]()), y)
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted and all(t.startswith("sklearn_spur.") for t in untrusted), untrusted
    loaded = sio.loads(data, trusted=untrusted)
    _same_head(est.head, loaded.head)
    np.testing.assert_array_equal(loaded.predict_proba(X if est_id != "neurontune"
                                                       else np.abs(X)),
                                  est.predict_proba(X if est_id != "neurontune"
                                                    else np.abs(X)))


def test_pickle_of_a_torch_head_embeds_no_torch_reduction():
    est = ERMClassifier(head=_linear()).fit(X, Y)
    blob = pickle.dumps(est)
    assert b"torch._utils" not in blob and b"_rebuild" not in blob
    loaded = pickle.loads(blob)
    _same_head(est.head, loaded.head)
    assert isinstance(est.head, torch.nn.Linear)  # the estimator itself is untouched


def test_torch_head_loads_as_arrays_without_torch(monkeypatch):
    state = encode_state({"head": _linear(), "C": 1.0})
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.warns(UserWarning, match=r"torch is not installed.*\(W, b\)"):
        decoded = decode_state(state)
    W, b = decoded["head"]
    np.testing.assert_allclose(W, W2.astype(np.float32))
    monkeypatch.undo()
    pred = ERMClassifier(head=(W, b)).fit(X, Y).predict(X)
    np.testing.assert_array_equal(pred, ERMClassifier(head=_linear()).fit(X, Y).predict(X))


def test_state_without_torch_objects_is_returned_unchanged():
    state = {"head": (W2, B2), "C": 1.0}
    assert decode_state(encode_state(state)) is not None
    assert decode_state(state) is state
