"""transform(X, out=path): no partial file loads as complete, no silent overwrite, resume."""

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_spur import TorchFeatureExtractor, load_embeddings
from sklearn_spur._io import EmbeddingFileError


class Flaky(nn.Module):
    """embed -> fc; raises on batch number ``fail_at`` (0-based) when it is set."""

    def __init__(self):
        super().__init__()
        self.embed, self.fc = nn.Linear(6, 5), nn.Linear(5, 2)
        self.fail_at, self.batches, self.stop = None, 0, RuntimeError

    def forward(self, x):
        self.batches += 1
        if self.fail_at is not None and self.batches - 1 == self.fail_at:
            raise self.stop("the machine went away")
        return self.fc(torch.relu(self.embed(x)))


X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)


def _flaky(fail_at=None):
    torch.manual_seed(0)
    model = Flaky()
    model.fail_at = fail_at
    return model


def ext(model, **params):
    return TorchFeatureExtractor(model, progress=False, batch_size=8, **params)


@pytest.fixture
def expected():
    return ext(_flaky()).fit_transform(X)


# ------------------------------------------------------------------------------ out=


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_run_never_loads_as_complete_and_resumes_bitwise(
        tmp_path, expected, stop):
    out = tmp_path / "emb.npy"
    model = _flaky(fail_at=2)  # the third batch fails
    model.stop = stop
    with pytest.raises(stop):
        ext(model).transform(X, out=out)
    partial = f"{out}.partial"
    assert not out.exists() and os.path.exists(partial)
    with open(f"{partial}.shard-0-of-1.json") as fh:
        record = json.load(fh)
    assert record["done"] == 16 and record["shape"] == [50, 5]
    with pytest.raises(EmbeddingFileError, match=r"emb.npy: no such file.*"
                       r"emb.npy.partial is an unfinished extraction \(16 of 50 rows"):
        load_embeddings(out)
    with pytest.raises(EmbeddingFileError, match=r"emb.npy.partial is an unfinished.*"
                       r"resume=True"):
        load_embeddings(partial)
    with pytest.raises(FileExistsError, match=r"resume=True.*overwrite=True"):
        ext(model).transform(X, out=out)

    model.fail_at, model.batches = None, 0
    Z = ext(model).transform(X, out=out, resume=True)
    assert model.batches == 7 - 2  # the two recorded batches were skipped
    assert isinstance(Z, np.memmap) and not Z.flags.writeable
    np.testing.assert_array_equal(np.load(out), expected)  # bitwise
    assert sorted(os.listdir(tmp_path)) == ["emb.npy"]  # partial and record gone
    np.testing.assert_array_equal(load_embeddings(out).X, expected)


def test_resume_refuses_another_model_or_batch_size(tmp_path):
    out = tmp_path / "emb.npy"
    with pytest.raises(RuntimeError):
        ext(_flaky(fail_at=3)).transform(X, out=out)
    other = _flaky()
    with torch.no_grad():
        other.embed.bias += 1
    for model, params, what in [(other, {}, "fingerprint"),
                                (_flaky(), {"batch_size": 16}, "batch_size"),
                                (_flaky(), {"layer": "fc", "capture": "output"},
                                 "fingerprint")]:
        with pytest.raises(ValueError, match=rf"cannot resume .*partial.*{what}"):
            TorchFeatureExtractor(model, progress=False, **{"batch_size": 8, **params}
                                  ).transform(X, out=out, resume=True)
    with pytest.raises(ValueError, match="cannot resume"):
        ext(_flaky()).transform(X[::-1].copy(), out=out, resume=True)  # other inputs
    ext(_flaky()).transform(X, out=out, overwrite=True)  # starts over
    assert sorted(os.listdir(tmp_path)) == ["emb.npy"]


def test_existing_files_are_replaced_only_with_overwrite(tmp_path, expected):
    out = tmp_path / "emb.npy"
    np.save(out, np.zeros((3, 3), np.float32))
    with pytest.raises(FileExistsError, match=r"emb.npy exists; pass overwrite=True"):
        ext(_flaky()).transform(X, out=out)
    with pytest.raises(RuntimeError):  # an interrupted overwrite keeps the old file
        ext(_flaky(fail_at=1)).transform(X, out=out, overwrite=True)
    np.testing.assert_array_equal(np.load(out), np.zeros((3, 3)))
    ext(_flaky()).transform(X, out=out, overwrite=True)
    np.testing.assert_array_equal(np.load(out), expected)


def test_out_is_checked_before_the_model_runs(tmp_path):
    model = _flaky()
    cases = [
        (tmp_path / "x.npz", ValueError, r"save_embeddings\(path, Z, y=y, spurious=s\)"),
        (tmp_path / "x.dat", ValueError, r"must end in .npy"),
        (tmp_path / "no" / "x.npy", FileNotFoundError, r"does not exist"),
        (np.empty((50, 5)), ValueError, r"float32 array, got dtype float64"),
        (np.empty((50, 5), np.float32)[::1].view(), None, None),
        (42, TypeError, r"\.npy path or a float32 array, got int"),
    ]
    read_only = np.empty((50, 5), np.float32)
    read_only.flags.writeable = False
    cases.append((read_only, ValueError, r"read-only"))
    for out, exc, match in cases:
        if exc is None:
            continue
        with pytest.raises(exc, match=match):
            ext(model).transform(X, out=out)
    assert model.batches == 0


def test_a_cache_hit_goes_through_the_same_partial_file(tmp_path, expected):
    e = ext(_flaky(), memory="auto")
    e.fit_transform(X)
    Z = e.transform(X, out=tmp_path / "hit.npy")
    np.testing.assert_array_equal(Z, expected)
    assert sorted(os.listdir(tmp_path)) == ["hit.npy"]


@pytest.mark.parametrize("form", ["tensor", "Dataset", "DataLoader", "list + preprocess"])
def test_resume_skips_finished_batches_for_every_input_form(tmp_path, expected, form):
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.from_numpy(X), torch.zeros(50))
    inputs, params = {
        "tensor": (torch.from_numpy(X), {}),
        "Dataset": (data, {}),
        "DataLoader": (DataLoader(data, batch_size=8), {}),
        "list + preprocess": (list(X), {"preprocess": np.stack}),
    }[form]
    model = _flaky(fail_at=4)
    with pytest.raises(RuntimeError):
        ext(model, **params).transform(inputs, out=tmp_path / "e.npy")
    model.fail_at, model.batches = None, 0
    Z = ext(model, **params).transform(inputs, out=tmp_path / "e.npy", resume=True)
    assert model.batches == 7 - 4
    np.testing.assert_array_equal(Z, expected)
