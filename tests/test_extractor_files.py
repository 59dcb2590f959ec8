"""transform(X, out=path): no partial file loads as complete, no silent overwrite, resume.

And load_embeddings on damaged, truncated or forged files: every case is an
EmbeddingFileError that names the file and what is wrong.
"""

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_spur import TorchFeatureExtractor, load_embeddings, save_embeddings
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


def test_save_embeddings_refuses_what_load_would_reject_and_writes_atomically(
        tmp_path):
    with pytest.raises(ValueError, match=r"y has shape \(3,\) but X has 4 rows"):
        save_embeddings(tmp_path / "a.npz", np.ones((4, 2)), y=[0, 1, 0])
    assert os.listdir(tmp_path) == []
    save_embeddings(tmp_path / "a", np.ones((4, 2)), y=[0, 1, 0, 1])
    assert os.listdir(tmp_path) == ["a.npz"]


# ------------------------------------------------------------------- damaged files


def _npy_bytes(arr, shape=None):
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
              "shape": arr.shape if shape is None else shape}
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(arr.tobytes())
    return buf.getvalue()


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


A = np.arange(12, dtype=np.float32).reshape(4, 3)


def _damaged(tmp_path, case):
    p = tmp_path / "bad.npz"
    if case == "member without .npy":
        return _zip(p, {"X": _npy_bytes(A)})
    if case == "truncated member":
        return _zip(p, {"X.npy": _npy_bytes(A)[:-7]})
    if case == "forged header, more rows":
        return _zip(p, {"X.npy": _npy_bytes(A, shape=(40, 3)), "y.npy": _npy_bytes(A)})
    if case == "forged header, fewer rows":
        return _zip(p, {"X.npy": _npy_bytes(A, shape=(2, 3))})
    if case == "truncated zip":
        data = _zip(p, {"X.npy": _npy_bytes(A)}).read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p
    if case == "corrupted compressed member":
        data = bytearray(_zip(p, {"X.npy": _npy_bytes(A)}, zipfile.ZIP_DEFLATED)
                         .read_bytes())
        data[60] ^= 0xFF
        p.write_bytes(bytes(data))
        return p
    if case == "X and embeddings":
        return _zip(p, {"X.npy": _npy_bytes(A), "embeddings.npy": _npy_bytes(A)})
    if case == "npz named .npy":
        return _zip(tmp_path / "bad.npy", {"X.npy": _npy_bytes(A)})
    q = tmp_path / "bad.npy"
    if case == "truncated .npy":
        q.write_bytes(_npy_bytes(A)[:-5])
    elif case == "empty .npy":
        q.write_bytes(b"")
    elif case == ".npy with appended bytes":
        q.write_bytes(_npy_bytes(A) + b"\0" * 12)
    elif case == "forged .npy header":
        q.write_bytes(_npy_bytes(A)[:6] + b"\x07\x00" + _npy_bytes(A)[8:])
    elif case == "npy named .npz":
        p.write_bytes(_npy_bytes(A))
        return p
    elif case == "directory":
        q.mkdir()
    return q


DAMAGED = {
    "member without .npy": r"member 'X' is not a .npy array",
    "truncated member": r"key 'X' cannot be read|truncated, or a forged header",
    "forged header, more rows": r"key 'X' cannot be read .*(forged header|expected "
                                r"480 bytes got 48)",
    "forged header, fewer rows": r"key 'X' cannot be read .*forged header",
    "truncated zip": r"not a readable .npz file",
    "corrupted compressed member": r"key 'X' cannot be read",
    "X and embeddings": r"holds both 'X' and 'embeddings'",
    "npz named .npy": r"is a zip \(.npz\) file.*rename it to .npz",
    "truncated .npy": r"truncated",
    "empty .npy": r"not a readable .npy file",
    ".npy with appended bytes": r"forged header or appended data",
    "forged .npy header": r"not a readable .npy file",
    "npy named .npz": r"it is a .npy file: rename it to .npy",
    "directory": r"is a directory",
}


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_files_raise_embedding_file_error_naming_the_file(tmp_path, case, mmap):
    path = _damaged(tmp_path, case)
    with pytest.raises(EmbeddingFileError, match=DAMAGED[case]) as info:
        load_embeddings(path, mmap=mmap)
    assert str(info.value).startswith(str(path))


def test_a_missing_key_says_why_it_is_needed_and_which_keys_there_are(tmp_path):
    save_embeddings(tmp_path / "e.npz", A, y=[0, 1, 0, 1])
    with pytest.raises(EmbeddingFileError, match=r"missing key 'spurious' \(the spurious "
                       r"attribute.*worst-group accuracy.*groups\)\. The file has keys "
                       r"\['X', 'y'\]"):
        load_embeddings(tmp_path / "e.npz", require=("spurious",))
    save_embeddings(tmp_path / "x.npz", A)
    with pytest.raises(EmbeddingFileError, match=r"missing key 'y' \(the class label"):
        load_embeddings(tmp_path / "x.npz", require=("y", "spurious"))
