"""Embedding files: .npy and .npz, memory mapping, and clear errors.

Damaged, truncated or forged files: every case is an EmbeddingFileError that
names the file and what is wrong. No torch here: these run without it.
"""

import io
import os
import zipfile

import numpy as np
import pytest

from sklearn_spur import load_embeddings, save_embeddings
from sklearn_spur._io import EmbeddingFileError


def test_npz_round_trip_memory_mapped(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    y, s = np.arange(20) % 2, np.arange(20) % 3
    save_embeddings(tmp_path / "a.npz", X, y=y, spurious=s)
    data = load_embeddings(tmp_path / "a.npz")
    assert isinstance(data.X, np.memmap)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_array_equal(data.spurious, s)
    assert not isinstance(load_embeddings(tmp_path / "a.npz", mmap=False).X, np.memmap)


def test_npy_and_aliases_and_compressed(tmp_path):
    X = np.ones((5, 3))
    np.save(tmp_path / "e.npy", X)
    data = load_embeddings(tmp_path / "e.npy")
    assert isinstance(data.X, np.memmap) and data.y is None and data.spurious is None
    np.savez_compressed(tmp_path / "c.npz", embeddings=X, labels=np.zeros(5))
    data = load_embeddings(tmp_path / "c.npz")  # compressed: read into memory
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, np.zeros(5))


def test_two_column_spurious(tmp_path):
    save_embeddings(tmp_path / "m.npz", np.ones((4, 2)), y=[0, 1, 0, 1],
                    spurious=[[0, 1], [1, 1], [0, 0], [1, 0]])
    assert load_embeddings(tmp_path / "m.npz").spurious.shape == (4, 2)


@pytest.mark.parametrize("arrays, require, match", [
    ({"Z": np.ones((3, 2))}, (), r"missing key 'X'.*\['Z'\]"),
    ({"X": np.ones((3, 2))}, ("spurious",), "missing key 'spurious'"),
    ({"X": np.ones((3, 2)), "y": np.ones(4)}, (), "'y' has shape"),
    ({"X": np.ones((3, 2)), "spurious": np.ones(2)}, (), "spurious.*2 rows"),
    ({"X": np.array([[1.0, np.nan], [0, 0]])}, (), r"NaN or infinity \(first rows: \[0\]"),
    ({"X": np.ones(3)}, (), "must be 2-D"),
    ({"X": np.ones((2, 2, 2))}, (), "must be 2-D"),
    ({"X": np.ones((0, 2))}, (), "empty"),
    ({"X": np.ones((2, 2), complex)}, (), "real numbers"),
])
def test_bad_files(tmp_path, arrays, require, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_embeddings(tmp_path / "bad.npz", require=require)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_embeddings(tmp_path / "nope.npz")
    (tmp_path / "x.txt").write_text("1 2")
    with pytest.raises(ValueError, match=".npy or .npz"):
        load_embeddings(tmp_path / "x.txt")
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_embeddings(tmp_path / "x.npz")
    np.save(tmp_path / "only.npy", np.ones((2, 2)))
    with pytest.raises(ValueError, match="holds embeddings only"):
        load_embeddings(tmp_path / "only.npy", require=("y",))


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


@pytest.mark.parametrize("case", ["member without .npy", "truncated member",
                                  "forged header, more rows"])
def test_the_cli_exits_2_on_a_damaged_file(tmp_path, case, capsys):
    from sklearn_spur.cli import main

    path = _damaged(tmp_path, case)
    assert main(["evaluate", "--train", str(path), "--test", str(path),
                 "--method", "erm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sklearn-spur: error: {path}") and "Traceback" not in err
