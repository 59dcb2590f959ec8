"""Sharded, resumable extraction into one file: bitwise equal to one process."""

import itertools
import os

import numpy as np
import pytest
import torch

from sklearn_spur import TorchFeatureExtractor, extract_sharded, load_embeddings
from sklearn_spur._io import EmbeddingFileError, read_records
from sklearn_spur.torch.sharded import shard_rows

FAIL_ENV = "SKLEARN_SPUR_TEST_FAIL_ABOVE"


class FailingNet(torch.nn.Module):
    """A small MLP that raises on a batch holding a marked row, when told to.

    The switch is an environment variable, read in forward: the model, and so
    the fingerprint a resumed run checks, is the same with or without it.
    """

    def __init__(self, d=6):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh())
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x):
        if os.environ.get(FAIL_ENV) and (x[:, 0] > 50).any():
            raise RuntimeError("simulated failure")
        return self.head(self.body(x))


def _inputs(n=1000, d=6):
    X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    X[min(700, n - 1), 0] = 100.0  # the marked row: in shard 1 of 2
    return X


def _extractor():
    return TorchFeatureExtractor(FailingNet(), batch_size=64, progress=False)


def test_shard_rows_are_contiguous_whole_batches():
    for n, k in [(1000, 2), (1000, 3), (65, 4), (10, 3)]:
        bounds = [shard_rows(n, (i, k), 64) for i in range(k)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert all(s % 64 == 0 for s, _ in bounds[1:] if s < n)


def test_shards_in_one_process_fill_one_file(tmp_path):
    X = _inputs()
    ref = _extractor().transform(X, out=str(tmp_path / "ref.npy"))
    out = str(tmp_path / "emb.npy")
    rows = _extractor().transform(X, out=out, shard=(1, 2))
    start, end = shard_rows(len(X), (1, 2), 64)
    assert np.array_equal(rows, ref[start:end])
    with pytest.raises(EmbeddingFileError, match=r"unfinished shard\(s\) \[0\] of 2"):
        load_embeddings(out)
    _extractor().transform(X, out=out, shard=(0, 2))
    assert not os.path.exists(out + ".partial")
    assert np.array_equal(load_embeddings(out).X, ref)


def test_two_processes_bitwise_equal_one_then_resume(tmp_path):
    X = _inputs()
    ref = np.array(_extractor().transform(X, out=str(tmp_path / "ref.npy")))
    out = str(tmp_path / "emb.npy")
    Z = extract_sharded(_extractor(), X, out, n_workers=2)
    assert np.array_equal(Z, ref)

    out = str(tmp_path / "interrupted.npy")
    os.environ[FAIL_ENV] = "1"
    try:
        with pytest.raises(RuntimeError, match="simulated failure"):
            extract_sharded(_extractor(), X, out, n_workers=2)
    finally:
        del os.environ[FAIL_ENV]
    with pytest.raises(EmbeddingFileError, match=r"unfinished shard\(s\) \[1\] of 2"):
        load_embeddings(out)
    (record,) = [r for r in read_records(out + ".partial") if r["shard"] == [1, 2]]
    assert record["rows"][0] < record["done"] <= 640  # batches before row 700 kept
    with pytest.raises(FileExistsError, match="resume=True"):
        extract_sharded(_extractor(), X, out, n_workers=2)
    Z = extract_sharded(_extractor(), X, out, n_workers=2, resume=True)
    assert np.array_equal(Z, ref)


def test_shard_argument_is_checked(tmp_path):
    X = _inputs(100)
    with pytest.raises(ValueError, match="shard="):
        _extractor().transform(X, out=str(tmp_path / "a.npy"), shard=(2, 2))
    with pytest.raises(ValueError, match=r"shard \(0, 4\) has no rows"):
        _extractor().transform(X, out=str(tmp_path / "b.npy"), shard=(0, 4))
    with pytest.raises(TypeError, match="out='emb.npy'"):
        _extractor().transform(X, shard=(0, 2))
