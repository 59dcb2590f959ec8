"""Adversarial audit of the extractor and the embedding-file loaders.

Every case ends in a correct result ("accept": the case checks the numbers)
or a clear error naming the argument and the fix ("refuse": the exception and
its message). ``test_audit_counts`` prints the tally the trust issue asks for.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from sklearn_spur import TorchFeatureExtractor, load_embeddings, save_embeddings
from sklearn_spur._io import EmbeddingFileError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.fc = nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.embed(x)))


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class Tokens(nn.Module):
    """(n, L, 6) token features -> fc on every token: the fc input is (n, L, 4)."""

    def __init__(self):
        super().__init__()
        self.embed, self.fc = nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.embed(x)).mean(1)


class Transpose(nn.Module):
    def forward(self, x):
        return x.T


class KwargsOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, a, b):
        return self.fc(a + b)


def net(cls=Net):
    torch.manual_seed(0)
    return cls()


def ext(model=None, **params):
    return TorchFeatureExtractor(net() if model is None else model, progress=False,
                                 **{"batch_size": 4, **params})


X = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
REF = ext().fit_transform(X)


def close(Z, expected=REF):
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)


def chars(batch):
    return torch.tensor([[float(len(t)), float(isinstance(t, bytes))] for t in batch])


def text_ext(**params):
    return TorchFeatureExtractor(nn.Sequential(nn.Linear(2, 2)), preprocess=chars,
                                 layer="", progress=False, **params)


TEXT = ["a", "bb", "ccc"]
TEXT_REF = np.array([[1, 0], [2, 0], [3, 0]], np.float32)


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.from_numpy(X))


def _fitted_then(**params):
    e = ext().fit(X)
    return e.set_params(**params)


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "e.npz", **arrays)
    return tmp_path / "e.npz"


class Armed(Net):
    """Net that raises on its second batch while ``armed`` (a plain attribute)."""

    armed, seen = False, 0

    def forward(self, x):
        self.seen += 1
        if self.armed and self.seen == 2:
            raise RuntimeError("interrupted")
        return super().forward(x)


def _shards(tmp_path):
    model = net(Armed)
    model.armed = True
    with pytest.raises(RuntimeError, match="interrupted"):
        ext(model).transform(X, out=tmp_path / "e.npy")
    model.armed = False
    return model


ACCEPT = {
    "one sample": lambda t: close(ext().fit_transform(X[:1]), REF[:1]),
    "batch larger than n": lambda t: close(ext(batch_size=1000).fit_transform(X)),
    "float64 input": lambda t: close(ext().fit_transform(X.astype(np.float64))),
    "float16 input": lambda t: close(ext().fit_transform(X.astype(np.float16)),
                                     ext().fit_transform(X.astype(np.float16)
                                                         .astype(np.float32))),
    "read-only memmap-like input": lambda t: close(
        ext().fit_transform(np.require(X, requirements="C").copy().view()
                            .setflags(write=False) or X)),
    "Fortran-ordered input": lambda t: close(ext().fit_transform(np.asfortranarray(X))),
    "list of rows": lambda t: close(ext().fit_transform([list(r) for r in X])),
    "tensor input": lambda t: close(ext().fit_transform(torch.from_numpy(X))),
    "DataFrame of floats": lambda t: close(ext().fit_transform(pd.DataFrame(X))),
    "Series of strings": lambda t: close(text_ext().fit_transform(pd.Series(TEXT)),
                                         TEXT_REF),
    "one-column DataFrame of strings": lambda t: close(
        text_ext().fit_transform(pd.DataFrame({"text": TEXT})), TEXT_REF),
    "bytes with preprocess": lambda t: close(
        text_ext().fit_transform([b"a", b"bb"]), np.array([[1, 1], [2, 1]])),
    "str then bytes, cached": lambda t: [
        close(text_ext(memory="auto").fit_transform(["abc"]), [[3, 0]]),
        close(text_ext(memory="auto").fit_transform([b"abc"]), [[3, 1]])],
    "numpy array of str": lambda t: close(text_ext().fit_transform(np.array(TEXT)),
                                          TEXT_REF),
    "tokens at a Linear input keep the features": lambda t: close(
        ext(net(Tokens)).fit_transform(np.ones((3, 5, 6), np.float32)),
        net(Tokens).embed(torch.ones(3, 5, 6)).mean(1).detach().numpy()),
    "conv maps are channels first": lambda t: close(
        ext(net(Conv), layer="conv", capture="output").fit_transform(
            np.ones((2, 3, 4, 4), np.float32)),
        net(Conv).conv(torch.ones(2, 3, 4, 4)).mean((2, 3)).detach().numpy()),
    "ordered DataLoader, ragged last batch": lambda t: close(
        ext().fit_transform(DataLoader(TensorDataset(torch.from_numpy(X)),
                                       batch_size=3))),
    "IterableDataset": lambda t: close(ext().fit_transform(Stream())),
    "NaN input is returned with a warning naming the row": lambda t: _nan_case(),
    "clone keeps parameters, shares the model": lambda t: close(
        clone(ext()).fit_transform(X)),
    "refit after set_params": lambda t: close(
        _fitted_then(layer="embed").fit(X).transform(X),
        ext(layer="embed").fit_transform(X)),
    "out= preallocated float32": lambda t: close(
        ext().transform(X, out=np.empty((10, 4), np.float32))),
    "resume after an interruption": lambda t: close(
        ext(_shards(t)).transform(X, out=t / "e.npy", resume=True)),
    "load float16 .npy as stored": lambda t: [
        np.save(t / "h.npy", X.astype(np.float16)),
        np.testing.assert_array_equal(load_embeddings(t / "h.npy").X,
                                      X.astype(np.float16))],
    "load Fortran-ordered .npz": lambda t: np.testing.assert_array_equal(
        load_embeddings(_npz(t, X=np.asfortranarray(X))).X, X),
    "load compressed .npz": lambda t: [
        np.savez_compressed(t / "c.npz", X=X, y=np.arange(10)),
        np.testing.assert_array_equal(load_embeddings(t / "c.npz").X, X)],
}


def _nan_case():
    bad = X.copy()
    bad[7, 0] = np.nan
    with pytest.warns(RuntimeWarning, match=r"rows \[7\]"):
        Z = ext().fit_transform(bad)
    close(Z[:7], REF[:7])


def _skops(t):
    sio = pytest.importorskip("skops.io")
    sio.dumps(ext())


REFUSE = {
    "empty array": (lambda t: ext().fit(np.ones((0, 6))), ValueError, r"no samples"),
    "0-d input": (lambda t: ext().fit(np.float32(1)), TypeError,
                  r"X is a float32, which has no order or length"),
    "single string": (lambda t: text_ext().fit("abc"), TypeError, r"not a single str"),
    "strings without preprocess": (lambda t: ext().fit(TEXT), ValueError,
                                   r"strings need preprocess="),
    "two text columns": (lambda t: text_ext().fit(pd.DataFrame({"a": TEXT, "b": TEXT})),
                         ValueError, r"strings in 2 columns.*df\['text'\]"),
    "generator": (lambda t: ext().fit(r for r in X), TypeError, r"no order or length"),
    "set": (lambda t: ext().fit({1.0, 2.0}), TypeError, r"no order or length"),
    "dict": (lambda t: ext().fit({"a": X}), TypeError, r"no order or length"),
    "ragged list": (lambda t: ext().fit([X[0], X[1, :3]]), ValueError,
                    r"cannot be stacked.*preprocess="),
    "wrong width": (lambda t: ext().fit(X[:, :5]), ValueError,
                    r"first batch of X \(a tensor of shape \(1, 5\)"),
    "uint8 input to a float model": (lambda t: ext().fit(X.astype(np.uint8)), ValueError,
                                     r"first batch of X .*torch.uint8"),
    "1-D input": (lambda t: ext().fit(X[:, 0]), ValueError, r"first batch of X"),
    "shuffled DataLoader": (lambda t: ext().fit_transform(DataLoader(
        TensorDataset(torch.from_numpy(X)), shuffle=True)), ValueError,
        r"RandomSampler.*shuffle=False"),
    "DataLoader dropping samples": (lambda t: ext().fit_transform(DataLoader(
        TensorDataset(torch.from_numpy(X)), batch_size=4, drop_last=True)), ValueError,
        r"last 2 samples.*drop_last=False"),
    "IterableDataset with out=": (lambda t: ext().transform(Stream(), out=t / "e.npy"),
                                  ValueError, r"out= needs inputs of known length"),
    "layer changed after fit": (lambda t: _fitted_then(layer="embed").transform(X),
                                ValueError, r"fitted on layer 'fc'.*fit again"),
    "pooling changed after fit": (
        lambda t: ext(net(Conv), layer="conv", capture="output").fit(
            np.ones((2, 3, 4, 4), np.float32)).set_params(pooling="flatten").transform(
            np.ones((2, 3, 4, 4), np.float32)),
        ValueError, r"fitted with 4 output features, but .* 64.*fit again"),
    "head() of another layer": (lambda t: ext(layer="embed").head(), ValueError,
                                r"head\(\) is the model's last nn.Linear \('fc'\)"),
    "head() with capture='output'": (lambda t: ext(capture="output").head(), ValueError,
                                     r"the output of 'fc'"),
    "input of a keyword-only call": (
        lambda t: ext(net(KwargsOnly), layer="").fit(
            DataLoader([{"a": torch.ones(2), "b": torch.ones(2)}], batch_size=1)),
        ValueError,
        r"keyword arguments only \(a, b\).*capture='output'"),
    "out= .npz": (lambda t: ext().transform(X, out=t / "e.npz"), ValueError,
                  r"save_embeddings"),
    "out= existing file": (lambda t: [np.save(t / "e.npy", X),
                                      ext().transform(X, out=t / "e.npy")],
                           FileExistsError, r"overwrite=True"),
    "out= read-only array": (lambda t: ext().transform(
        X, out=np.zeros((10, 4), np.float32).view().setflags(write=False)),
        TypeError, r"got NoneType"),
    "out= wrong shape": (lambda t: ext().transform(X, out=np.zeros((10, 3), np.float32)),
                         ValueError, r"shape \(10, 4\)"),
    "resume with other inputs": (lambda t: ext(_shards(t)).transform(
        X + 1, out=t / "e.npy", resume=True), ValueError, r"cannot resume"),
    "load an interrupted file": (lambda t: [_shards(t), load_embeddings(t / "e.npy")],
                                 EmbeddingFileError, r"unfinished extraction"),
    "load the .partial itself": (lambda t: [
        _shards(t), load_embeddings(str(t / "e.npy") + ".partial")],
        EmbeddingFileError, r"4 of 10 rows written"),
    "skops dump": (_skops, TypeError, r"state_dict"),
    "unbatched DataLoader of single samples": (lambda t: ext().fit_transform(
        DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=None)), ValueError,
        r"gave 4 rows for a batch of 6 inputs.*batch_size=None"),
    "a sequence-first layer": (lambda t: ext(nn.Sequential(Transpose(), nn.Linear(
        10, 2)), layer="1").fit_transform(X), ValueError,
        r"gave 6 rows for a batch of 4 inputs"),
    "npz without X": (lambda t: load_embeddings(_npz(t, Z=X)), EmbeddingFileError,
                      r"missing key 'X'.*\['Z'\]"),
    "npz with object member": (lambda t: load_embeddings(_npz(
        t, X=X, y=np.array([None] * 10))), EmbeddingFileError,
        r"'y' cannot be read.*not Python objects"),
    "npz missing spurious": (lambda t: load_embeddings(_npz(t, X=X, y=np.ones(10)),
                                                       require=["spurious"]),
                             EmbeddingFileError, r"groups\)\. The file has keys"),
    "save y of wrong length": (lambda t: save_embeddings(t / "s", X, y=[1]), ValueError,
                               r"y has shape \(1,\) but X has 10 rows"),
    "save object spurious": (lambda t: save_embeddings(
        t / "s", X, spurious=np.array([{}] * 10)), ValueError, r"Python objects"),
}
REFUSE["out= read-only array"] = (
    lambda t: ext().transform(X, out=_read_only(np.zeros((10, 4), np.float32))),
    ValueError, r"read-only")


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", list(ACCEPT))
def test_accepted_correctly(case, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error" if "NaN" not in case else "default")
        ACCEPT[case](tmp_path)


@pytest.mark.parametrize("case", list(REFUSE))
def test_refused_clearly(case, tmp_path):
    fn, exc, match = REFUSE[case]
    with pytest.raises(exc, match=match):
        fn(tmp_path)


def test_audit_counts():
    """The closing note reports these counts; keep them honest."""
    tried = len(ACCEPT) + len(REFUSE)
    print(f"extractor/loader audit: tried {tried}, refused clearly {len(REFUSE)}, "
          f"accepted correctly {len(ACCEPT)}")
    assert tried >= 55
