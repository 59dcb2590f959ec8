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
from sklearn.exceptions import NotFittedError
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
    "editor": lambda h: SingleWeightEditor(head=h, memory=False),
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
    assert untrusted, untrusted
    assert all(t.startswith("sklearn_spur.") for t in untrusted), untrusted
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
    ref = ERMClassifier(head=_linear()).fit(X, Y).predict(X)
    np.testing.assert_array_equal(pred, ref)


def test_state_without_torch_objects_is_returned_unchanged():
    state = {"head": (W2, B2), "C": 1.0}
    assert decode_state(encode_state(state)) is not None
    assert decode_state(state) is state


# ------------------------------------------------------------------ the audit
# Each case either returns normally after checking the answer against a hand
# computation ("ok"), or must raise the given error with a message that names
# the argument and the fix.
CASES = {}


def case(expect, match=None):
    def register(fn):
        CASES[fn.__name__] = (fn, expect, match)
        return fn
    return register


def _hand(W, b, classes=(0, 1), Xh=X):
    return np.asarray(classes)[np.argmax(Xh.astype(np.float64) @ np.asarray(W, float).T
                                         + np.asarray(b, float), axis=1)]


def _predicts(head, W, b, classes=(0, 1), y=Y):
    resolved = resolve_head(head, X, y)
    np.testing.assert_array_equal(resolved.predict(X), _hand(W, b, classes))
    return resolved


W3, B3 = RNG.normal(size=(3, 6)), RNG.normal(size=3)
Y3 = _hand(W3, B3, (0, 1, 2))
YS = np.array(["cat", "dog"])[Y]


# resolve_head: dtypes
@case("ok")
def rh_float16_tuple():
    w, b = W2.astype(np.float16), B2.astype(np.float16)
    assert resolve_head((w, b)).coef.dtype == np.float32  # not float16, not float64
    _predicts((w, b), w, b)


@case("ok")
def rh_bfloat16_linear():
    layer = _linear(dtype=torch.bfloat16)
    _predicts(layer, layer.weight.float().detach(), layer.bias.float().detach())


@case("ok")
def rh_float64_tensor_becomes_float32_for_float32_X():
    head = _predicts((torch.tensor(W2), torch.tensor(B2)), W2, B2)
    assert head.coef.dtype == np.float32


@case("ok")
def rh_int_weights():
    w = np.rint(W2 * 3).astype(np.int64)
    _predicts((w, np.zeros(2, int)), w, np.zeros(2))


@case("ok")
def rh_bool_weights():
    w = W2 > 0
    _predicts((w, B2), w.astype(float), B2)


@case(TypeError, r"weight must hold real numbers; got dtype complex")
def rh_complex_weights():
    resolve_head((W2 + 1j, B2), X, Y)


@case(TypeError, r"weight must hold real numbers; got dtype <U")
def rh_string_weights():
    resolve_head((W2.astype(str), B2), X, Y)


@case(TypeError, r"bias must hold real numbers; got dtype object")
def rh_object_bias():
    resolve_head((W2, np.array([1.0, "a"], dtype=object)), X, Y)


# resolve_head: devices, autograd, missing parts
@case(ValueError, r"'meta' device and holds no values.*load_state_dict")
def rh_meta_device_linear():
    resolve_head(torch.nn.Linear(6, 2, device="meta"), X, Y)


@case(ValueError, r"not initialised \(a lazy module\); run one forward pass")
def rh_lazy_linear():
    resolve_head(torch.nn.LazyLinear(2), X, Y)


@case("ok")
def rh_requires_grad_tensors_untouched():
    w, b = torch.tensor(W2, requires_grad=True), torch.tensor(B2, requires_grad=True)
    _predicts((w, b), W2, B2)
    assert w.requires_grad and w.grad is None and torch.equal(w, torch.tensor(W2))


@case("ok")
def rh_linear_without_bias():
    _predicts(_linear(bias=False), W2.astype(np.float32), np.zeros(2))


@case("ok")
def rh_tuple_bias_none():
    _predicts((W2, None), W2, np.zeros(2))


@case("ok")
def rh_1d_weight_is_one_binary_logit():
    w, b = W2[1] - W2[0], B2[1] - B2[0]
    _predicts((w, b), np.stack([np.zeros(6), w]), [0.0, b])


@case("ok")
def rh_linear_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    _predicts(_linear().cuda(), W2.astype(np.float32), B2.astype(np.float32))


# resolve_head: shapes and values
@case(ValueError, r"weight must be 2-D .* got shape \(1, 2, 6\)")
def rh_3d_weight():
    resolve_head((W2[None], B2), X, Y)


@case(ValueError, r"takes 4 features but X has 6.*embeddings that the head was")
def rh_wrong_width():
    resolve_head((W2[:, :4], B2), X, Y)


@case(ValueError, r"weights contain NaN or infinity")
def rh_nan_weight():
    resolve_head((np.where(W2 > 1, np.nan, W2), B2), X, Y)


@case(ValueError, r"weights contain NaN or infinity")
def rh_inf_bias():
    resolve_head(_linear(b=np.array([0.0, np.inf])), X, Y)


@case(ValueError, r"non-empty 2-D array")
def rh_empty_weight():
    resolve_head((np.zeros((0, 6)), np.zeros(0)), X, Y)


@case(ValueError, r"weight has 2 outputs but bias has 3")
def rh_bias_too_long():
    resolve_head((W2, np.zeros(3)), X, Y)


# resolve_head: classes
@case("ok")
def rh_string_classes():
    head = _predicts((W2, B2, ["cat", "dog"]), W2, B2, ["cat", "dog"], YS)
    assert head.classes.tolist() == ["cat", "dog"]


@case("ok")
def rh_bool_classes_unsorted():
    head = _predicts((W2, B2, [True, False]), W2, B2, [True, False], Y.astype(bool))
    assert head.classes.tolist() == [False, True]


@case("ok")
def rh_unsorted_int_classes_three():
    head = _predicts((W3, B3, [2, 0, 1]), W3, B3, [2, 0, 1], np.array([2, 0, 1])[Y3])
    assert head.classes.tolist() == [0, 1, 2]


@case("ok")
def rh_linear_head_object_is_canonicalised():
    head = resolve_head(LinearHead(W2, B2, np.array(["dog", "cat"])), X, YS)
    assert head.classes.tolist() == ["cat", "dog"] and head.coef.shape == (1, 6)
    np.testing.assert_array_equal(head.predict(X), _hand(W2, B2, ["dog", "cat"]))


@case(ValueError, r"classes must be distinct labels")
def rh_duplicate_classes():
    resolve_head((W3, B3, ["a", "b", "a"]))


@case(ValueError, r"distinct labels, not NaN")
def rh_nan_class():
    resolve_head((W2, B2, [0.0, np.nan]))


@case(ValueError, r"classes mix label types")
def rh_mixed_type_classes():
    resolve_head((W2, B2, np.array(["a", 1], dtype=object)))


@case(ValueError, r"2 output\(s\) need 2 classes, got 3")
def rh_classes_wrong_length():
    resolve_head((W2, B2, [0, 1, 2]))


@case(ValueError, r"need 2 classes, got 2 \(shape \(1, 2\)\)")
def rh_classes_2d():
    resolve_head((W2, B2, [[0, 1]]))


@case(ValueError, r"no output for.*different types \(numbers vs strings\)")
def rh_int_y_against_string_classes():
    resolve_head((W2, B2, ["0", "1"]), X, Y)


# resolve_head: fitted estimators
@case("ok")
def rh_frozen_logistic_regression():
    lr = LogisticRegression().fit(X, Y)
    head = resolve_head(FrozenEstimator(lr), X, Y)
    np.testing.assert_allclose(head.predict_proba(X), lr.predict_proba(X), atol=1e-6)


@case(ValueError, r"not fitted")
def rh_frozen_unfitted():
    resolve_head(FrozenEstimator(LogisticRegression()), X, Y)


@case("ok")
def rh_frozen_pipeline_of_affine_steps():
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(with_mean=False), PCA(5, whiten=True),
                         LogisticRegression()).fit(X + 3, Y)
    head = resolve_head(FrozenEstimator(pipe), X + 3, Y)
    np.testing.assert_allclose(head.predict_proba(X + 3), pipe.predict_proba(X + 3),
                               atol=1e-5)


@case(TypeError, r"decision_function of SVC is not X @ coef_.T \+ intercept_")
def rh_one_vs_one_svc():
    from sklearn.svm import SVC

    resolve_head(SVC(kernel="linear").fit(X, Y3), X, Y3)


@case("ok")
def rh_other_linear_classifiers():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import RidgeClassifier, SGDClassifier
    from sklearn.svm import SVC, LinearSVC

    for est in (SVC(kernel="linear"), LinearSVC(), RidgeClassifier(),
                SGDClassifier(random_state=0), LinearDiscriminantAnalysis()):
        for y in (Y, Y3):
            if isinstance(est, SVC) and y is Y3:
                continue
            est.fit(X, y)
            head = resolve_head(FrozenEstimator(est), X, y)
            np.testing.assert_allclose(head.decision_function(X),
                                       est.decision_function(X), rtol=1e-4, atol=1e-4)


@case(TypeError, r"GridSearchCV.*search\.best_estimator_")
def rh_grid_search():
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2).fit(X, Y)
    ERMClassifier(head=FrozenEstimator(search)).fit(X, Y)


@case(TypeError, r"CalibratedClassifierCV is not a linear classifier")
def rh_calibrated_classifier():
    from sklearn.calibration import CalibratedClassifierCV

    resolve_head(CalibratedClassifierCV(LogisticRegression(), cv=2).fit(X, Y), X, Y)


@case(TypeError, r"cannot read a linear head from list.*\(W, b\[, classes\]\) tuple")
def rh_list_instead_of_tuple():
    resolve_head([W2, B2], X, Y)


@case("ok")
def rh_sequential_dropout_linear():
    _predicts(torch.nn.Sequential(torch.nn.Dropout(0.2), _linear()),
              W2.astype(np.float32), B2.astype(np.float32))


@case(TypeError, r"torch head must be an nn.Linear.*got Sequential")
def rh_sequential_of_two_linears():
    resolve_head(torch.nn.Sequential(torch.nn.Linear(6, 6), _linear()), X, Y)


# to_torch
def _pipe(*steps):
    from sklearn.pipeline import make_pipeline

    return make_pipeline(*steps, LogisticRegression()).fit(X + 3, Y)


@case(ValueError, r"exceeds the range of torch.float16.*dtype=torch.float32")
def tt_float16_overflow():
    to_torch(ERMClassifier(head=(W2 * 1e5, B2)).fit(X, Y), dtype=torch.float16)


@case("ok")
def tt_float16_and_bfloat16():
    lr = LogisticRegression().fit(X, Y)
    for dtype in (torch.float16, torch.bfloat16, "float64"):
        layer = to_torch(lr, dtype=dtype)
        out = layer(torch.as_tensor(X).to(layer.weight.dtype)).double().detach().numpy()
        np.testing.assert_allclose(out[:, 1] - out[:, 0], lr.decision_function(X),
                                   atol=0.05)


@case(TypeError, r"dtype must be a floating torch dtype .* got torch.int64")
def tt_integer_dtype():
    to_torch(LogisticRegression().fit(X, Y), dtype=torch.int64)


@case(ValueError, r"weights contain NaN")
def tt_nan_coef():
    lr = LogisticRegression().fit(X, Y)
    lr.coef_[0, 0] = np.nan
    to_torch(lr)


@case(TypeError, r"'minmaxscaler' \(MinMaxScaler\) is not an affine map")
def tt_minmax_clip():
    from sklearn.preprocessing import MinMaxScaler

    to_torch(_pipe(MinMaxScaler(clip=True)))


@case(TypeError, r"\(ColumnTransformer\) is not an affine map")
def tt_column_transformer():
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import StandardScaler

    to_torch(_pipe(make_column_transformer((StandardScaler(), [0, 1]),
                                           remainder="passthrough")))


@case(TypeError, r"search\.best_estimator_")
def tt_search():
    from sklearn.model_selection import GridSearchCV

    to_torch(GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2).fit(X, Y))


@case("ok")
def tt_string_classes_in_classes_order():
    erm = ERMClassifier(head=(W2, B2, ["dog", "cat"])).fit(X, YS)
    out = to_torch(erm, dtype=torch.float64)(torch.as_tensor(X).double()).detach()
    np.testing.assert_allclose(torch.softmax(out, 1).numpy(),
                               softmax(X @ W2.T + B2, axis=1)[:, ::-1], atol=1e-6)


@case("ok")
def tt_editor_in_a_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(with_mean=False),
                         SingleWeightEditor(head=None, strength=1.0, memory=False))
    pipe.fit(X + 3, Y, singleweighteditor__spurious=S)
    out = to_torch(pipe, dtype=torch.float64)(torch.as_tensor(X + 3).double())
    out = out.detach().numpy()
    np.testing.assert_allclose(out[:, 1] - out[:, 0], pipe.decision_function(X + 3),
                               atol=1e-4)  # the editor computes in float32


# replace_head
def _net(n_out=2):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(),
                               torch.nn.Linear(6, n_out))


LR = LogisticRegression().fit(X, Y)


@case(ValueError, r"name must be the dotted name .* got ''")
def rp_empty_name():
    replace_head(_net(), "", LR)


@case(ValueError, r"name must be the dotted name .* got 2")
def rp_name_not_a_string():
    replace_head(_net(), 2, LR)


@case(ValueError, r"no submodule 'fc'")
def rp_unknown_name():
    replace_head(_net(), "fc", LR)


@case(TypeError, r"layer '1' is a ReLU, not an nn.Linear.*layers are \['0', '2'\]")
def rp_relu():
    replace_head(_net(), "1", LR)


@case(TypeError, r"layer '0' is a Conv2d, not an nn.Linear")
def rp_conv():
    replace_head(torch.nn.Sequential(torch.nn.Conv2d(3, 6, 1)), "0", LR)


@case(ValueError, r"'2' takes 6 features but the fitted estimator takes 4")
def rp_wrong_width():
    replace_head(_net(), "2", LogisticRegression().fit(X[:, :4], Y))


@case(ValueError, r"layer '2' has 3 output\(s\) for 3 classes but the fitted estimat")
def rp_fewer_classes():
    replace_head(_net(3), "2", LR)


@case(ValueError, r"missing from the estimator: \[1\]; not outputs of the layer: \[2\]")
def rp_other_class_set():
    replace_head(_net(), "2", LogisticRegression().fit(X, 2 * Y))


@case("ok")
def rp_not_strict_changes_the_output_count():
    net = _net(3)
    assert replace_head(net, "2", LR, strict=False)[2].out_features == 2
    assert net[2].out_features == 3


@case(ValueError, r"classes= orders the outputs in strict mode")
def rp_classes_with_not_strict():
    replace_head(_net(), "2", LR, classes=[0, 1], strict=False)


@case(ValueError, r"Pass classes=\[label of output 0")
def rp_string_classes_need_a_map():
    replace_head(_net(), "2", LogisticRegression().fit(X, YS))


@case("ok")
def rp_string_classes_mapped_and_model_untouched():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lr = LogisticRegression().fit(X, YS)
    patched = replace_head(net, "2", lr, classes=["dog", "cat"])
    out = patched[2](torch.as_tensor(X)).detach()
    np.testing.assert_allclose(torch.softmax(out, 1).numpy(),
                               lr.predict_proba(X)[:, ::-1], atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@case("ok")
def rp_float16_and_bias_free_layer():
    net = _net()
    net[2] = torch.nn.Linear(6, 2, bias=False)
    net = net.half()
    patched = replace_head(net, "2", LR)
    assert patched[2].weight.dtype == torch.float16 and net[2].bias is None
    out = patched[2](torch.as_tensor(X).half()).float().detach().numpy()
    np.testing.assert_allclose(out[:, 1] - out[:, 0], LR.decision_function(X),
                               atol=0.02)


@case(ValueError, r"'meta' device; load the model's weights first")
def rp_meta_model():
    replace_head(_net().to("meta"), "2", LR)


@case(ValueError, r"uninitialised lazy layer; run one forward pass")
def rp_lazy_layer():
    replace_head(torch.nn.Sequential(torch.nn.LazyLinear(2)), "0", LR)


@case(TypeError, r"model must be a torch.nn.Module or a fitted skorch")
def rp_not_a_module():
    replace_head({"2": None}, "2", LR)


@case("ok")
def rp_editor_reordered_and_single_logit():
    ed = SingleWeightEditor(head=None, strength=0.5, memory=False).fit(X, YS, spurious=S)
    scores = ed.decision_function(X)  # logit of "dog"
    patched = replace_head(_net(), "2", ed, classes=["dog", "cat"])
    out = patched[2](torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(out[:, 0] - out[:, 1], scores, atol=1e-4)
    one = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Linear(6, 1))
    out1 = replace_head(one, "1", ed, classes=["cat", "dog"])[1](torch.as_tensor(X))
    np.testing.assert_allclose(out1.detach().numpy()[:, 0], scores, atol=1e-4)


class _CosineLinear(torch.nn.Linear):
    def forward(self, x):
        return super().forward(torch.nn.functional.normalize(x, dim=1))


@case(TypeError, r"_CosineLinear head overrides nn.Linear.forward")
def rh_linear_subclass_with_its_own_forward():
    resolve_head(_CosineLinear(6, 2), X, Y)


@case("ok")
def rh_linear_subclass_without_its_own_forward():
    from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

    layer = NonDynamicallyQuantizableLinear(6, 2)
    _predicts(layer, layer.weight.detach(), layer.bias.detach())


@case(NotFittedError, r"to_torch: this LogisticRegression is not fitted; fit it")
def tt_unfitted():
    to_torch(LogisticRegression())


@pytest.mark.parametrize("forge", ["dtype", "data", "shape"])
def test_forged_stored_head_is_refused(forge):
    state = encode_state({"head": _linear()})
    enc = state["head"]
    if forge == "dtype":
        enc["weight"]["dtype"] = "load"  # a torch function, not a dtype
    elif forge == "data":
        enc["weight"]["data"] = np.array(["os.system"], dtype=object)
    else:
        enc["weight"]["data"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="stored torch head is corrupt"):
        decode_state(state)


@pytest.mark.parametrize("name", list(CASES))
def test_audit(name):
    fn, expect, match = CASES[name]
    if expect == "ok":
        fn()
    else:
        with pytest.raises(expect, match=match):
            fn()


def test_audit_counts():
    refused = sum(expect != "ok" for _, expect, _ in CASES.values())
    assert len(CASES) >= 60 and refused >= 30, (len(CASES), refused)
