"""TorchFeatureExtractor: no code run on load, n_jobs > 1, sample order, no stale cache.

Regression tests for the extractor part of the trust issue: each case here
gave a silent wrong answer, ran code on load, or crashed before.
"""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from sklearn_spur import ERMClassifier, TorchFeatureExtractor
from sklearn_spur.torch import _persist

ROOT = Path(__file__).resolve().parents[1]


class Net(nn.Module):
    """embed -> ReLU -> scale (a non-persistent buffer) -> fc. Counts forward calls."""

    calls = 0

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 4)
        self.fc = nn.Linear(4, 2)
        self.register_buffer("scale", torch.ones(4), persistent=False)

    def forward(self, x):
        type(self).calls += 1
        return self.fc(torch.relu(self.embed(x)) * self.scale)


@pytest.fixture(autouse=True)
def _fresh():
    TorchFeatureExtractor.clear_cache()
    Net.calls = 0
    yield
    TorchFeatureExtractor.clear_cache()


def _net():
    torch.manual_seed(0)
    return Net()


X6 = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)


def ext(model, **params):
    return TorchFeatureExtractor(model, progress=False, batch_size=8, **params)


# ------------------------------------------------------------------------- security


def test_skops_refuses_the_model_and_says_how_to_persist_it():
    sio = pytest.importorskip("skops.io")
    from sklearn.pipeline import make_pipeline

    e = ext(_net()).fit(X6)
    for obj in (e, make_pipeline(ext(_net()), ERMClassifier())):
        with pytest.raises(TypeError, match=r"state_dict\(\).*weights_only=True"):
            sio.dumps(obj)
    assert isinstance(e.model, nn.Module)  # dumping did not touch the extractor


def test_a_forged_skops_file_cannot_run_code(tmp_path, monkeypatch):
    """The old __setstate__ unpickled a byte string from the file: code ran on load."""
    sio = pytest.importorskip("skops.io")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    forged = {"layer": None, "capture": "input", "pooling": "avg", "preprocess": None,
              "batch_size": 8, "device": "auto", "dtype": None, "num_workers": 0,
              "progress": False, "memory": None,
              "_torch_state": pickle.dumps({"model": Payload()})}
    with monkeypatch.context() as patch:
        patch.setattr(TorchFeatureExtractor, "__getstate__", lambda self: forged)
        data = sio.dumps(ext(_net()))
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["sklearn_spur.torch.extractor.TorchFeatureExtractor"]
    with pytest.raises(ValueError, match="not unpickled, since that could run any code"):
        sio.loads(data, trusted=untrusted)
    assert not marker.exists()


def test_pickle_goes_through_the_normal_protocol_and_leaves_the_object_alone():
    e = ext(_net()).fit(X6)
    expected = e.transform(X6)
    blob = pickle.dumps(e)
    assert isinstance(e.model, nn.Module)  # __getstate__ copied the state
    assert b"_load_from_bytes" in blob  # torch's own tensor reducer, not ours
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.transform(X6), expected)
    assert TorchFeatureExtractor.__doc__.count("loading a pickle runs code") == 1


def test_restore_model_moves_back_only_to_devices_that_exist():
    model = _net()
    devices = {"embed.weight": "cuda:7"}
    assert _persist.restore_model(model, devices) is model
    assert model.embed.weight.device.type == "cpu"  # no cuda:7 here: stays on CPU
    assert _persist.host_copy(model) == (model, None)  # a CPU model is not copied


@pytest.mark.slow
def test_grid_search_n_jobs_2_with_a_model_class_defined_in_main(tmp_path):
    """loky + a class from __main__ crashed with BrokenProcessPool before."""
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, torch
        from torch import nn
        from sklearn.model_selection import GridSearchCV
        from sklearn.pipeline import make_pipeline
        from sklearn_spur import ERMClassifier, TorchFeatureExtractor

        class ScriptNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed, self.fc = nn.Linear(6, 4), nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(torch.relu(self.embed(x)))

        if __name__ == "__main__":
            torch.manual_seed(0)
            X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
            y = (X[:, 0] > 0).astype(int)
            pipe = make_pipeline(TorchFeatureExtractor(ScriptNet(), progress=False),
                                 ERMClassifier())
            grid = {"ermclassifier__C": [0.1, 1.0]}
            scores = [GridSearchCV(pipe, grid, cv=2, n_jobs=n).fit(X, y)
                      .cv_results_["mean_test_score"].tolist() for n in (1, 2)]
            assert scores[0] == scores[1], scores
            print("same scores", scores[1])
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same scores" in proc.stdout


# ----------------------------------------------------------------------- sample order


@pytest.mark.parametrize("make, what", [
    (lambda d: DataLoader(d, batch_size=4, shuffle=True), "RandomSampler"),
    (lambda d: DataLoader(d, batch_size=None, shuffle=True), "RandomSampler"),
    (lambda d: DataLoader(d, batch_size=4, sampler=SubsetRandomSampler(range(20))),
     "SubsetRandomSampler"),
    (lambda d: DataLoader(d, batch_size=3, drop_last=True), "drop_last=True"),
])
def test_a_dataloader_that_reorders_or_drops_samples_is_refused(make, what):
    loader = make(TensorDataset(torch.from_numpy(X6), torch.zeros(20)))
    with pytest.raises(ValueError, match=rf"{what}.*(shuffle|drop_last)=False"):
        ext(_net()).fit_transform(loader)
    assert Net.calls == 0


def test_an_ordered_dataloader_gives_the_rows_in_order():
    expected = ext(_net()).fit_transform(X6)
    data = TensorDataset(torch.from_numpy(X6), torch.zeros(20))
    for loader in (DataLoader(data, batch_size=3), DataLoader(data, batch_size=4,
                                                              drop_last=True)):
        np.testing.assert_allclose(ext(_net()).fit_transform(loader), expected,
                                   rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- cache


def test_the_cache_is_off_by_default():
    e = ext(_net())
    e.fit_transform(X6)
    e.transform(X6)
    assert e.memory is None and Net.calls == 2 * 3


def test_a_forward_hook_is_never_served_from_the_cache():
    model = _net()
    e = ext(model, memory="auto")
    before = e.fit_transform(X6)
    handle = model.embed.register_forward_hook(lambda m, a, out: out * 0 + 1)
    with torch.no_grad():
        expected = torch.relu(torch.ones(20, 4)).numpy()
    np.testing.assert_array_equal(e.transform(X6), expected)
    handle.remove()
    np.testing.assert_array_equal(e.transform(X6), before)


def test_a_non_persistent_buffer_is_in_the_key():
    model = _net()
    e = ext(model, memory="auto")
    before = e.fit_transform(X6)
    model.scale.fill_(2.0)  # not in state_dict()
    np.testing.assert_allclose(e.transform(X6), 2 * before, rtol=1e-6)


CELL = """
import torch
from torch import nn

class Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.fc = nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc({body})

def prep(batch):
    return batch * {factor}
"""


def _run_cell(body, factor):
    """A notebook cell, run again with other code: same names, new objects."""
    namespace = {"__name__": "__main__"}
    exec(CELL.format(body=body, factor=factor), namespace)  # noqa: S102
    torch.manual_seed(0)
    return namespace["Cell"](), namespace["prep"]


def test_a_class_or_preprocess_redefined_in_a_rerun_cell_misses():
    model, prep = _run_cell("torch.relu(self.embed(x))", 1)
    first = ext(model, memory="auto", preprocess=prep).fit_transform(X6)
    model2, _ = _run_cell("torch.tanh(self.embed(x))", 1)
    model2.load_state_dict(model.state_dict())  # same weights, new forward
    np.testing.assert_allclose(ext(model2, memory="auto", preprocess=prep)
                               .fit_transform(X6),
                               np.tanh(first * 0 + _pre_relu(model, X6)), rtol=1e-5)
    _, prep2 = _run_cell("torch.relu(self.embed(x))", 3)
    np.testing.assert_allclose(ext(model, memory="auto", preprocess=prep2)
                               .fit_transform(X6),
                               np.maximum(_pre_relu(model, 3 * X6), 0), rtol=1e-5)


def _pre_relu(model, X):
    with torch.no_grad():
        return model.embed(torch.from_numpy(X)).numpy()


def test_str_and_bytes_are_different_inputs():
    model = nn.Sequential(nn.Linear(1, 2))

    def encode(batch):
        return torch.tensor([[float(isinstance(b, bytes))] for b in batch])

    e = TorchFeatureExtractor(model, preprocess=encode, memory="auto", progress=False,
                              layer="", capture="input")
    assert e.fit_transform(["abc"]).tolist() == [[0.0]]
    assert e.fit_transform([b"abc"]).tolist() == [[1.0]]


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("model_dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("x_dtype", [np.float16, np.float32, np.float64])
def test_half_and_double_models_and_inputs_give_float32(model_dtype, x_dtype):
    model = _net().to(model_dtype)
    Z = ext(model).fit_transform(X6.astype(x_dtype))
    assert Z.dtype == np.float32
    reference = ext(_net()).fit_transform(X6)
    tol = 1e-6 if model_dtype == torch.float64 and x_dtype != np.float16 else 5e-2
    np.testing.assert_allclose(Z, reference, atol=tol * max(1, np.abs(reference).max()))


def test_autocast_and_a_bfloat16_tensor_input_give_float32():
    for params, X in [({"dtype": "bfloat16"}, X6),
                      ({}, torch.from_numpy(X6).to(torch.bfloat16))]:
        assert ext(_net(), **params).fit_transform(X).dtype == np.float32
