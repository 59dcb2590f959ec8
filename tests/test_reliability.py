"""Reliability: bad inputs fail early and clearly, good inputs are never altered,
fitted estimators survive a round trip, results are deterministic.

Every public estimator, the metrics, ``load_embeddings``, the extractor and the
CLI are driven through a table of bad inputs; each case expects one exception
type and a message that names the offending argument.
"""

import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import sklearn_spur as ss
from sklearn_spur._io import EmbeddingFileError
from sklearn_spur.cli import main as cli_main
from sklearn_spur.exceptions import MissingSpuriousError
from sklearn_spur.metrics import group_report, worst_group_accuracy

N, D = 160, 6


def _data(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], N // 2)
    # attribute agrees with the class for 3/4 of the samples; every group present
    s = np.where(rng.random(N) < 0.75, y, 1 - y)
    X = np.c_[y + rng.normal(0, 0.7, N), s + rng.normal(0, 0.3, N),
              rng.normal(size=(N, D - 2))]
    return np.maximum(X, 0).astype(dtype) + dtype(0.01), y, s


X0, Y0, S0 = _data()
HEAD_W = np.array([[1.0, 1.5, 0.0, 0.0, 0.0, 0.0]], np.float32)
HEAD_B = np.array([-1.0], np.float32)


def _torch_head():
    torch.manual_seed(0)
    lin = torch.nn.Linear(D, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-0.5, -0.75, 0, 0, 0, 0], [0.5, 0.75, 0, 0, 0, 0]]))
        lin.bias.copy_(torch.tensor([0.5, -0.5]))
    return lin


# id -> (factory, spurious: "required" | "optional" | "none", kind)
ESTIMATORS = {
    "ERM": (lambda: ss.ERMClassifier(), "optional", "clf"),
    "ERM-head": (lambda: ss.ERMClassifier(head=_torch_head()), "optional", "clf"),
    "DFR": (lambda: ss.DFRClassifier(n_fits=2, random_state=0), "required", "clf"),
    "Probe": (lambda: ss.SpuriousProbe(), "required", "trf"),
    "RRClArC": (lambda: ss.RRClArCClassifier(), "required", "clf"),
    "Editor": (lambda: ss.SingleWeightEditor(memory=False), "optional", "clf"),
    "Editor-head": (lambda: ss.SingleWeightEditor(head=_torch_head(), memory=False),
                    "optional", "clf"),
    "NeuronTuner": (lambda: ss.NeuronTuner(random_state=0), "none", "clf"),
    "NeuronTuner-head": (lambda: ss.NeuronTuner(head=(HEAD_W, HEAD_B), random_state=0),
                         "none", "clf"),
}
BASE_IDS = ["ERM", "DFR", "Probe", "RRClArC", "Editor", "NeuronTuner"]
WITH_SPURIOUS = [k for k in BASE_IDS if ESTIMATORS[k][1] != "none"]


def _fit(est, X, y, s=None):
    kind = ESTIMATORS_BY_TYPE.get(type(est).__name__, "optional")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kind == "none":
            return est.fit(X, y)
        return est.fit(X, y, spurious=s)


ESTIMATORS_BY_TYPE = {"NeuronTuner": "none"}


def _output(est, X):
    """What the fitted estimator computes on X (transform or class scores)."""
    if hasattr(est, "transform"):
        return est.transform(X)
    return est.decision_function(X)


# --------------------------------------------------------------- bad-input table
def _with(X=None, y=None, s=None):
    return (X0 if X is None else X, Y0 if y is None else y, S0 if s is None else s)


def _nan_X():
    X = X0.copy()
    X[3, 1] = np.nan
    return X


def _inf_X():
    X = X0.copy()
    X[5, 0] = np.inf
    return X


MIXED = np.array([0, "a"] * (N // 2), dtype=object)
FIT_CASES = {
    # case: (inputs, exception, message regex, applies to spurious-less estimators)
    "nan-X": (lambda: _with(X=_nan_X()), ValueError, r"Input X contains NaN", True),
    "inf-X": (lambda: _with(X=_inf_X()), ValueError, r"Input X contains infinity", True),
    "rank1-X": (lambda: _with(X=X0[:, 0]), ValueError, r"X must be 2-D|Expected 2D array",
                True),
    "rank3-X": (lambda: _with(X=X0[:, :, None]), ValueError, r"X must be 2-D|dim 3", True),
    "len-y": (lambda: _with(y=Y0[:-1]), ValueError, r"inconsistent numbers of samples: "
              r"\[160, 159\]", True),
    "len-spurious": (lambda: _with(s=S0[:-1]), ValueError, r"`spurious` has 159 rows", False),
    "single-class": (lambda: _with(y=np.zeros(N, int)), ValueError,
                     r"at least 2 classes in y", True),
    "mixed-y": (lambda: _with(y=MIXED), ValueError, r"`y` mixes label types|label type",
                True),
    "mixed-spurious": (lambda: _with(s=MIXED), ValueError, r"`spurious` mixes label types",
                       False),
    "nan-spurious": (lambda: _with(s=np.where(np.arange(N) == 3, np.nan, S0 * 1.0)),
                     ValueError, r"`spurious` contains NaN", False),
    "rank3-spurious": (lambda: _with(s=S0[:, None, None]), ValueError,
                       r"`spurious` must be 1-D .* or 2-D", False),
    "complex-X": (lambda: _with(X=X0.astype(np.complex64)), ValueError,
                  r"Complex data not supported", True),
    "complex-spurious": (lambda: _with(s=S0 + 0j), ValueError,
                         r"`spurious` must hold discrete labels", False),
    "object-X": (lambda: _with(X=np.full((N, D), "a", dtype=object)), ValueError,
                 r"could not convert string to float", True),
    "empty-X": (lambda: (X0[:0], Y0[:0], S0[:0]), ValueError, r"0 sample\(s\)", True),
    "continuous-y": (lambda: _with(y=np.linspace(0, 1, N)), ValueError,
                     r"Unknown label type: continuous", True),
}
# the probe fits without y-classes (a concept direction needs only the attribute)
NOT_APPLICABLE = {("Probe", "single-class")}


def _fit_cases():
    for case, (_, _, _, no_s) in FIT_CASES.items():
        for est in BASE_IDS:
            if ESTIMATORS[est][1] == "none" and not no_s:
                continue
            if (est, case) in NOT_APPLICABLE:
                continue
            yield pytest.param(est, case, id=f"{est}-{case}")


@pytest.mark.parametrize("est_id, case", list(_fit_cases()))
def test_bad_fit_input(est_id, case):
    make_inputs, exc, match, _ = FIT_CASES[case]
    X, y, s = make_inputs()
    est = ESTIMATORS[est_id][0]()
    with pytest.raises(exc, match=match):
        _fit(est, X, y, s)


PREDICT_CASES = {
    "narrow-X": (lambda: X0[:, :4], r"X has 4 features, but \w+ is expecting 6"),
    "nan-X": (_nan_X, r"Input X contains NaN"),
    "rank1-X": (lambda: X0[0], r"X must be 2-D|Expected 2D array"),
    "complex-X": (lambda: X0.astype(np.complex64), r"Complex data not supported"),
    "empty-X": (lambda: X0[:0], r"0 sample\(s\)"),
}


@pytest.fixture(scope="module")
def fitted():
    """Every estimator fitted once on the float32 data."""
    return {k: _fit(ESTIMATORS[k][0](), X0, Y0, S0) for k in ESTIMATORS}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
@pytest.mark.parametrize("est_id", BASE_IDS)
def test_bad_predict_input(fitted, est_id, case):
    make_X, match = PREDICT_CASES[case]
    with pytest.raises(ValueError, match=match):
        _output(fitted[est_id], make_X())


@pytest.mark.parametrize("est_id", [k for k in BASE_IDS if ESTIMATORS[k][1] == "required"])
def test_missing_spurious_direct(est_id):
    est = ESTIMATORS[est_id][0]()
    with pytest.raises(MissingSpuriousError, match=r"needs the spurious attribute.*"
                       r"enable_metadata_routing=True"):
        est.fit(X0, Y0)


@pytest.mark.parametrize("routing", [False, True])
def test_missing_spurious_in_search(routing):
    """Inside GridSearchCV every fit fails, and the failure report carries the fix."""
    search = GridSearchCV(ss.DFRClassifier(n_fits=2, random_state=0), {"C": [1.0, 0.1]},
                          cv=2)
    fix = "Metadata routing is on" if routing else r"enable_metadata_routing=True"
    with sklearn.config_context(enable_metadata_routing=routing), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"All the 4 fits failed") as info:
            search.fit(X0, Y0)
    assert "DFRClassifier needs the spurious attribute" in str(info.value)
    assert fix.replace("\\", "") in str(info.value)


@pytest.mark.parametrize("routing", [False, True])
@pytest.mark.parametrize("est_id", ["DFR", "Probe"])
def test_missing_spurious_in_pipeline(routing, est_id):
    last = ss.ERMClassifier() if est_id == "Probe" else None
    steps = [StandardScaler(), ESTIMATORS[est_id][0]()] + ([last] if last else [])
    pipe = make_pipeline(*steps)
    expected = "Metadata routing is on" if routing else "enable_metadata_routing=True"
    with sklearn.config_context(enable_metadata_routing=routing):
        with pytest.raises(MissingSpuriousError, match=expected):
            pipe.fit(X0, Y0)


def test_spurious_routed_when_given():
    """The positive control of the two tests above: with routing on it arrives."""
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(ss.DFRClassifier(n_fits=2, random_state=0),
                              {"C": [1.0, 0.1]}, cv=2).fit(X0, Y0, spurious=S0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_group_and_class_with_one_sample():
    s = S0.copy()
    s[0] = 7  # group (class 0, value 7) has one sample
    with pytest.raises(ValueError, match=r"needs at least 2 samples.*\(0, 7\), 1"):
        ss.DFRClassifier(n_fits=2).fit(X0, Y0, spurious=s)
    X = np.r_[X0, X0[:1]]
    y = np.r_[Y0, 2]  # class 2 has one sample
    with pytest.raises(ValueError, match=r"needs at least 2 samples.*\(2, 0\), 1"):
        ss.DFRClassifier(n_fits=2).fit(X, y, spurious=np.r_[S0, 0])


def test_group_with_no_samples_in_metrics():
    s = np.where(Y0 == 0, S0, 0)  # class 1 never has value 1
    with pytest.raises(ValueError, match=r"no samples .*\(1, 1\).*missing='raise'"):
        worst_group_accuracy(Y0, Y0, spurious=s, missing="raise")
    with pytest.warns(UserWarning, match=r"\(1, 1\)"):
        assert worst_group_accuracy(Y0, Y0, spurious=s) == 1.0


HEAD_CASES = {
    "width": ((np.ones((1, D - 2)), np.zeros(1)), ValueError,
              r"head takes 4 features but X has 6"),
    "bias": ((np.ones((2, D)), np.zeros(3)), ValueError,
             r"head: weight has 2 outputs but bias has 3"),
    "classes": ((np.ones((1, D)), np.zeros(1), ["a", "b"]), ValueError,
                r"y contains labels \[0, 1\] that the head has no output for"),
    "nan": ((np.full((1, D), np.nan), np.zeros(1)), ValueError,
            r"head's weights contain NaN"),
    "torch-width": (lambda: torch.nn.Linear(D + 1, 2), ValueError,
                    r"head takes 7 features but X has 6"),
    "not-linear": (lambda: torch.nn.Sequential(torch.nn.Linear(D, 3), torch.nn.ReLU(),
                                               torch.nn.Linear(3, 2)),
                   TypeError, r"torch head must be an nn.Linear"),
    "string": ("fc", TypeError, r"cannot read a linear head from str"),
    "unfitted": (lambda: sklearn.linear_model.LogisticRegression(), ValueError,
                 r"LogisticRegression passed as `head` is not fitted.*FrozenEstimator"),
}
HEAD_ESTIMATORS = {
    "ERM": lambda h: ss.ERMClassifier(head=h),
    "Editor": lambda h: ss.SingleWeightEditor(head=h, memory=False),
    "NeuronTuner": lambda h: ss.NeuronTuner(head=h),
    "Probe": lambda h: ss.SpuriousProbe(head=h),
    "RRClArC": lambda h: ss.RRClArCClassifier(head=h),
}


@pytest.mark.parametrize("case", list(HEAD_CASES))
@pytest.mark.parametrize("est_id", list(HEAD_ESTIMATORS))
def test_bad_head(est_id, case):
    import sklearn.linear_model  # noqa: F401

    head, exc, match = HEAD_CASES[case]
    head = head() if callable(head) and not isinstance(head, tuple) else head
    est = HEAD_ESTIMATORS[est_id](head)
    # spurious=None: the probe and RR-ClArC then read the head (annotation-free mode)
    with pytest.raises(exc, match=match):
        if est_id == "NeuronTuner":
            est.fit(X0, Y0)
        else:
            est.fit(X0, Y0, spurious=None)


STRENGTH_CASES = [
    (lambda: ss.SpuriousProbe(strength=1.5), r"'strength' parameter of SpuriousProbe"),
    (lambda: ss.SpuriousProbe(strength=-0.1), r"'strength' parameter of SpuriousProbe"),
    (lambda: ss.SingleWeightEditor(strength=1.5), r"'strength' parameter of SingleWeightEd"),
    (lambda: ss.SingleWeightEditor(strength=-0.1), r"'strength' parameter of SingleWeightE"),
    (lambda: ss.SingleWeightEditor(strength="full"), r"'strength' parameter of SingleWeig"),
    (lambda: ss.RRClArCClassifier(lam=-1.0), r"'lam' parameter of RRClArCClassifier"),
    (lambda: ss.NeuronTuner(aggregate="some"), r"'aggregate' parameter of NeuronTuner"),
    (lambda: ss.DFRClassifier(n_fits=0), r"'n_fits' parameter of DFRClassifier"),
]


@pytest.mark.parametrize("i", range(len(STRENGTH_CASES)))
def test_parameter_out_of_range(i):
    make, match = STRENGTH_CASES[i]
    est = make()
    with pytest.raises(InvalidParameterError, match=match):
        _fit(est, X0, Y0, S0)


METRIC_CASES = {
    "length": (lambda: worst_group_accuracy(Y0, Y0[:-1], spurious=S0),
               r"y_true and y_pred must be 1-D of equal length"),
    "spurious-length": (lambda: worst_group_accuracy(Y0, Y0, spurious=S0[:-1]),
                        r"`spurious` has 159 rows"),
    "empty": (lambda: group_report(Y0[:0], Y0[:0], spurious=S0[:0]), r"y_true is empty"),
    "mixed": (lambda: worst_group_accuracy(MIXED, Y0, spurious=S0),
              r"`y_true` mixes label types"),
    "nan-spurious": (lambda: group_report(Y0, Y0, spurious=np.where(S0, np.nan, 0.0)),
                     r"`spurious` contains NaN"),
    "2d-y": (lambda: worst_group_accuracy(Y0[:, None], Y0[:, None], spurious=S0),
             r"must be 1-D"),
    "no-spurious": (lambda: worst_group_accuracy(Y0, Y0, spurious=None),
                    r"'spurious' parameter"),
    "missing-option": (lambda: group_report(Y0, Y0, spurious=S0, missing="drop"),
                       r"'missing' parameter"),
}


@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_bad_metric_input(case):
    call, match = METRIC_CASES[case]
    with pytest.raises(ValueError, match=match):  # InvalidParameterError is a ValueError
        call()


def test_scorer_without_spurious_raises_the_fix():
    from sklearn_spur.exceptions import SpuriousNotRoutedError

    est = ss.ERMClassifier().fit(X0, Y0)
    with pytest.raises(SpuriousNotRoutedError, match=r"enable_metadata_routing=True"):
        ss.worst_group_scorer(est, X0, Y0)


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


NPZ_CASES = {
    "no-X": (dict(Z=np.ones((3, 2))), (), r"missing key 'X'.*keys \['Z'\]"),
    "no-y": (dict(X=np.ones((3, 2))), ("y",), r"missing key 'y'"),
    "no-spurious": (dict(X=np.ones((3, 2)), y=[0, 1, 0]), ("spurious",),
                    r"missing key 'spurious'"),
    "y-length": (dict(X=np.ones((3, 2)), y=[0, 1]), (), r"'y' has shape \(2,\).*3 rows"),
    "spurious-length": (dict(X=np.ones((3, 2)), spurious=[0, 1]), (),
                        r"`spurious` has 2 rows"),
    "rank3": (dict(X=np.ones((3, 2, 2))), (), r"must be 2-D.*\(3, 2, 2\)"),
    "nan": (dict(X=np.array([[1.0, np.nan], [0, 0]])), (), r"NaN or infinity.*\[0\]"),
    "complex": (dict(X=np.ones((3, 2)) + 1j), (), r"must be real numbers.*complex"),
    "object": (dict(X=np.array([[1, "a"]], dtype=object)), (),
               r"key 'X' cannot be read"),
    "empty": (dict(X=np.ones((0, 2))), (), r"empty \(0 rows\)"),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_bad_embedding_file(tmp_path, case):
    arrays, require, match = NPZ_CASES[case]
    path = _npz(tmp_path, "emb.npz", **arrays)
    with pytest.raises(EmbeddingFileError, match=match) as info:
        ss.load_embeddings(path, require=require)
    assert str(path) in str(info.value)  # says where


def test_bad_embedding_path(tmp_path):
    with pytest.raises(EmbeddingFileError, match=r"no such file"):
        ss.load_embeddings(tmp_path / "nope.npz")
    (tmp_path / "emb.csv").write_text("1,2\n")
    with pytest.raises(EmbeddingFileError, match=r"expected a .npy or .npz"):
        ss.load_embeddings(tmp_path / "emb.csv")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EmbeddingFileError, match=r"not a readable .npz"):
        ss.load_embeddings(tmp_path / "bad.npz")


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli_main(argv, out=out)
    return rc, err.getvalue()


def test_cli_bad_files(tmp_path):
    good = _npz(tmp_path, "good.npz", X=X0, y=Y0, spurious=S0)
    no_s = _npz(tmp_path, "nos.npz", X=X0, y=Y0)
    no_x = _npz(tmp_path, "nox.npz", Z=X0)
    narrow = _npz(tmp_path, "narrow.npz", X=X0[:, :3], y=Y0, spurious=S0)
    cases = [
        (["--train", str(no_x), "--test", str(good)], r"nox.npz: missing key 'X'"),
        (["--train", str(good), "--test", str(no_s), "--method", "erm"],
         r"nos.npz: missing key 'spurious'"),
        (["--train", str(good), "--test", str(good), "--val", str(no_s), "--method", "dfr"],
         r"nos.npz: missing key 'spurious'"),
        (["--train", str(good), "--test", str(good), "--method", "dfr"],
         r"--val is required"),
        (["--train", str(good), "--test", str(narrow), "--method", "erm"],
         r"narrow.npz: embeddings have 3 features but the train file's have 6"),
        (["--train", str(tmp_path / "nope.npz"), "--test", str(good)], r"no such file"),
    ]
    for argv, match in cases:
        rc, err = _cli(["evaluate", *argv])
        assert rc == 2, argv
        assert err.startswith("sklearn-spur: error: "), err
        assert re.search(match, err), (match, err)
    with pytest.raises(SystemExit):  # argparse: unknown method
        _cli(["evaluate", "--train", str(good), "--test", str(good), "--method", "nope"])


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 5), torch.nn.ReLU(),
                               torch.nn.Linear(5, 2))


EXTRACTOR_CASES = [
    (dict(layer="fc"), np.ones((4, 8), np.float32), ValueError,
     r"layer 'fc' is not a submodule of Sequential. Available layers \(4\): '0', '1'"),
    (dict(), np.ones((0, 8), np.float32), ValueError, r"X has no samples"),
    (dict(), "images", TypeError, r"not a single string"),
    (dict(), ["a", "b"], ValueError, r"strings need preprocess="),
    (dict(capture="both"), np.ones((4, 8), np.float32), InvalidParameterError,
     r"'capture' parameter"),
]


@pytest.mark.parametrize("i", range(len(EXTRACTOR_CASES)))
def test_bad_extractor_input(i):
    params, X, exc, match = EXTRACTOR_CASES[i]
    ext = ss.TorchFeatureExtractor(_model(), progress=False, memory=None, **params)
    with pytest.raises(exc, match=match):
        ext.fit(X)


def test_extractor_model_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module.*got str"):
        ss.TorchFeatureExtractor("resnet50", progress=False).fit(np.ones((2, 8)))


def test_bad_input_case_count():
    """The closing note reports this count; keep it honest."""
    n_fit = len(list(_fit_cases()))
    n = (n_fit + len(PREDICT_CASES) * len(BASE_IDS) + 3 + 2 + 4 + 2 + 2
         + len(HEAD_CASES) * len(HEAD_ESTIMATORS) + len(STRENGTH_CASES)
         + len(METRIC_CASES) + 1 + len(NPZ_CASES) + 3 + 7 + len(EXTRACTOR_CASES) + 1)
    assert n >= 40
    print(f"bad-input cases: {n}")


# ------------------------------------------------------------------ no mutation
def _snapshot(obj):
    if isinstance(obj, torch.nn.Module):
        return {k: v.detach().clone() for k, v in obj.state_dict().items()}, obj.training, [
            p.requires_grad for p in obj.parameters()]
    if torch.is_tensor(obj):
        return ("tensor", obj.detach().clone(), obj.requires_grad, obj.grad)
    if isinstance(obj, tuple):
        return tuple(_snapshot(o) for o in obj)
    return np.array(obj, copy=True)


def _same(a, b):
    if isinstance(a, tuple) and a and isinstance(a[0], str) and a[0] == "tensor":
        return torch.equal(a[1], b[1]) and a[2] == b[2] and b[3] is None
    if isinstance(a, tuple) and len(a) == 3 and isinstance(a[0], dict):
        return (a[1] == b[1] and a[2] == b[2] and a[0].keys() == b[0].keys()
                and all(torch.equal(a[0][k], b[0][k]) for k in a[0]))
    if isinstance(a, tuple):
        return all(_same(x, z) for x, z in zip(a, b))
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


@pytest.mark.parametrize("est_id", list(ESTIMATORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_not_mutated(est_id, dtype):
    X, y, s = _data(dtype)
    y = np.array(["cat", "dog"])[y]  # string labels: a head needs classes named
    est = ESTIMATORS[est_id][0]()
    if hasattr(est, "head") and est.head is not None:
        head = est.head
        if isinstance(head, tuple):
            est.set_params(head=(head[0].astype(dtype), head[1].astype(dtype),
                                 np.array(["cat", "dog"])))
        else:
            est.set_params(head=(head.weight, head.bias, np.array(["cat", "dog"])))
    before = [_snapshot(v) for v in (X, y, s)]
    head_before = None if getattr(est, "head", None) is None else _snapshot(est.head)
    for a in (X, y, s):  # any write into the inputs raises
        a.flags.writeable = False
    _fit(est, X, y, s)
    _output(est, X)
    if hasattr(est, "predict_proba"):
        est.predict_proba(X)
    for a, b in zip(before, (X, y, s)):
        assert _same(a, b)
    if head_before is not None:
        assert _same(head_before, _snapshot(est.head))


@pytest.mark.parametrize("est_id", ["ERM-head", "Editor-head"])
def test_torch_head_not_mutated(est_id):
    est = ESTIMATORS[est_id][0]()
    head = est.head
    head.train()
    before = _snapshot(head)
    _fit(est, X0, Y0, S0)
    est.to_torch()
    assert _same(before, _snapshot(head))
    assert head.weight.grad is None


def test_extractor_leaves_model_and_inputs_alone():
    model = _model()
    model.train()
    before = _snapshot(model)
    X = np.random.default_rng(0).random((10, 8), dtype=np.float32)
    X_before = X.copy()
    X.flags.writeable = False
    Z = ss.TorchFeatureExtractor(model, progress=False, memory=None).fit_transform(X)
    assert Z.shape == (10, 5) and Z.dtype == np.float32
    assert _same(before, _snapshot(model))
    assert np.array_equal(X, X_before)
    Xt = torch.from_numpy(X_before.copy())
    ss.TorchFeatureExtractor(model, progress=False, memory=None).fit_transform(Xt)
    assert torch.equal(Xt, torch.from_numpy(X_before))


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("est_id", list(ESTIMATORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(est_id, dtype):
    X, y, s = _data(dtype)
    est = _fit(ESTIMATORS[est_id][0](), X, y, s)
    out = _output(est, X)
    assert out.dtype == dtype
    if hasattr(est, "predict_proba"):
        assert est.predict_proba(X).dtype == dtype
    for name in ("coef_", "intercept_", "subclass_coef_", "directions_"):
        if hasattr(est, name):
            assert getattr(est, name).dtype == dtype, name


@pytest.mark.parametrize("est_id", BASE_IDS)
def test_dataframe_and_tensor_inputs(fitted, est_id):
    ref = fitted[est_id]
    cols = [f"unit{i}" for i in range(D)]
    df = pd.DataFrame(X0, columns=cols)
    est = _fit(ESTIMATORS[est_id][0](), df, pd.Series(Y0), pd.Series(S0))
    assert list(est.feature_names_in_) == cols
    # a DataFrame arrives column-major: summation order, hence the last bit, may differ
    np.testing.assert_allclose(_output(est, df), _output(ref, X0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unit0"):  # renamed columns are refused
        _output(est, df.rename(columns={"unit0": "other"}))


@pytest.mark.parametrize("est_id", BASE_IDS)
def test_tensor_inputs(fitted, est_id):
    ref = fitted[est_id]
    est_t = _fit(ESTIMATORS[est_id][0](), torch.from_numpy(X0), torch.from_numpy(Y0),
                 torch.from_numpy(S0))
    assert not hasattr(est_t, "feature_names_in_")
    np.testing.assert_array_equal(_output(est_t, torch.from_numpy(X0)), _output(ref, X0))
    assert _output(est_t, torch.from_numpy(X0)).dtype == np.float32


def test_tensor_conversion_is_shared():
    """GPU tensors (and bfloat16, which numpy lacks) go through one helper."""
    from sklearn_spur._core.groups import host_array as _host_array

    t = torch.from_numpy(X0).to(torch.bfloat16).requires_grad_(False)
    a = _host_array(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_allclose(a, X0, rtol=1e-2, atol=1e-2)
    assert _host_array(X0) is X0


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("est_id", list(ESTIMATORS))
def test_pickle_round_trip(fitted, est_id):
    est = fitted[est_id]
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(_output(loaded, X0), _output(est, X0))
    if hasattr(est, "predict"):
        np.testing.assert_array_equal(loaded.predict(X0), est.predict(X0))


# a torch module in `head=` is not skops-serialisable (skops refuses torch types)
SKOPS_IDS = list(ESTIMATORS)


@pytest.mark.parametrize("est_id", SKOPS_IDS)
def test_skops_round_trip(fitted, est_id):
    sio = pytest.importorskip("skops.io")
    est = fitted[est_id]
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    # only the package's own classes need trusting: nothing else is executed on load
    assert all(t.startswith("sklearn_spur.") for t in untrusted), untrusted
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(_output(loaded, X0), _output(est, X0))


def test_extractor_pickle_round_trip():
    ext = ss.TorchFeatureExtractor(_model(), progress=False, memory=None)
    X = np.random.default_rng(1).random((6, 8), dtype=np.float32)
    Z = ext.fit_transform(X)
    loaded = pickle.loads(pickle.dumps(ext))
    np.testing.assert_array_equal(loaded.transform(X), Z)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_fitted_model_loads_on_cpu(tmp_path):
    head = _torch_head().cuda()
    Xg, yg, sg = (torch.from_numpy(a).cuda() for a in (X0, Y0, S0))
    ests = {k: _fit(ESTIMATORS[k][0]().set_params(head=head) if k.endswith("-head")
                    else ESTIMATORS[k][0](), Xg, yg, sg) for k in ESTIMATORS}
    ext = ss.TorchFeatureExtractor(_model().cuda(), progress=False, memory=None)
    Z = ext.fit_transform(np.ones((3, 8), np.float32))
    path = tmp_path / "gpu.pkl"
    expected = {k: _output(e, X0) for k, e in ests.items()}
    path.write_bytes(pickle.dumps((ests, ext, expected, Z)))
    code = (
        "import pickle, numpy as np, sys\n"
        f"ests, ext, expected, Z = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        "for k, e in ests.items():\n"
        "    out = e.transform(X) if hasattr(e, 'transform') else e.decision_function(X)\n"
        "    assert np.array_equal(out, expected[k]), k\n"
        "assert np.array_equal(ext.transform(np.ones((3, 8), np.float32)), Z)\n"
    )
    np.save(tmp_path / "X.npy", X0)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_gpu_state_is_moved_on_pickle_only_for_accelerators():
    from sklearn_spur._core.base import _cpu_copy

    head = _torch_head()
    assert _cpu_copy(head) is head  # CPU objects pickle as they are
    pair = (torch.ones(2), np.ones(2))
    assert _cpu_copy(pair)[0] is pair[0]


# ------------------------------------------------------------------ determinism
def _state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def _equal_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb, equal_nan=True), k
        elif hasattr(va, "get_params"):
            _equal_state(_state(va), _state(vb))
        else:
            assert va == vb or (va != va and vb != vb), k


@pytest.mark.parametrize("est_id", BASE_IDS)
def test_same_random_state_same_result(est_id):
    rng_est = ESTIMATORS[est_id][0]()
    if "random_state" in rng_est.get_params():
        rng_est.set_params(random_state=3)
    a = _fit(clone(rng_est), X0, Y0, S0)
    b = _fit(clone(rng_est), X0, Y0, S0)
    _equal_state(_state(a), _state(b))
    np.testing.assert_array_equal(_output(a, X0), _output(b, X0))


def test_random_state_matters_for_dfr():
    a = ss.DFRClassifier(n_fits=2, C=1.0, random_state=0).fit(X0, Y0, spurious=S0)
    b = ss.DFRClassifier(n_fits=2, C=1.0, random_state=1).fit(X0, Y0, spurious=S0)
    assert not np.array_equal(a.coef_, b.coef_)  # the control: seeds do differ


def test_n_jobs_does_not_change_results():
    est = ss.DFRClassifier(n_fits=2, C=0.3, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        scores = [cross_val_score(est, X0, Y0, cv=3, scoring=ss.worst_group_scorer,
                                  params={"spurious": S0}, n_jobs=n_jobs)
                  for n_jobs in (1, 2)]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert scores[0].min() > 0.5
