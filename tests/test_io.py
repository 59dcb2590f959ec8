"""Embedding files: .npy and .npz, memory mapping, and clear errors."""

import numpy as np
import pytest

from sklearn_spur import load_embeddings, save_embeddings


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
