"""Embedding files: ``.npy`` (embeddings only) and ``.npz`` (embeddings, labels, attribute)."""

from __future__ import annotations

import os
import zipfile

import numpy as np
from sklearn.utils import Bunch

from ._core.groups import check_spurious

__all__ = ["load_embeddings", "save_embeddings"]

#: Accepted names of each array in an ``.npz`` file (first match wins).
NPZ_KEYS = {
    "X": ("X", "embeddings"),
    "y": ("y", "labels"),
    "spurious": ("spurious",),
}


class EmbeddingFileError(ValueError):
    """An embedding file is missing, unreadable or inconsistent."""


def _npz_member_memmap(path, zf, member):
    """Memory-map an uncompressed ``.npy`` member of a zip; None if compressed."""
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        offset = fh.tell()
    if dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def _check_finite_2d(X, path):
    if X.ndim != 2:
        raise EmbeddingFileError(
            f"{path}: embeddings must be 2-D (n_samples, n_features), got shape {X.shape}."
        )
    if X.shape[0] == 0:
        raise EmbeddingFileError(f"{path}: the embeddings are empty (0 rows).")
    if X.dtype.kind not in "fiu":
        raise EmbeddingFileError(
            f"{path}: embeddings must be real numbers, got dtype {X.dtype}."
        )
    if X.dtype.kind == "f":
        step = max(1, (1 << 24) // max(X.shape[1], 1))  # ~16M values per check
        for start in range(0, X.shape[0], step):
            if not np.isfinite(X[start:start + step]).all():
                rows = start + np.flatnonzero(~np.isfinite(X[start:start + step]).all(1))
                raise EmbeddingFileError(
                    f"{path}: embeddings contain NaN or infinity (first rows: "
                    f"{rows[:5].tolist()})."
                )


def load_embeddings(path, *, mmap=True, require=()):
    """Load embeddings (and labels and spurious attribute) from ``.npy`` or ``.npz``.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file holds the embeddings only. A ``.npz`` file holds the
        arrays under these keys: ``X`` (or ``embeddings``), shape
        ``(n_samples, n_features)``; optionally ``y`` (or ``labels``), shape
        ``(n_samples,)``; optionally ``spurious``, shape ``(n_samples,)`` or
        ``(n_samples, n_attributes)``. Write them with :func:`save_embeddings`
        or ``np.savez``.
    mmap : bool, default=True
        Memory-map the embeddings instead of reading them into memory. Works for
        ``.npy`` and for uncompressed ``.npz`` (``np.savez``, not
        ``np.savez_compressed``, which is read into memory).
    require : iterable of {"y", "spurious"}, default=()
        Arrays that must be present.

    Returns
    -------
    data : Bunch
        ``X``, ``y`` (None if absent), ``spurious`` (None if absent), ``path``.

    Raises
    ------
    ValueError
        On a missing file, a missing key, mismatched lengths, non-finite values or
        a wrong rank, with a message naming the file and the key.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_spur import load_embeddings, save_embeddings
    >>> path = os.path.join(tempfile.mkdtemp(), "val.npz")
    >>> save_embeddings(path, np.ones((4, 3), np.float32), y=[0, 1, 0, 1],
    ...                 spurious=[0, 0, 1, 1])
    >>> data = load_embeddings(path)
    >>> data.X.shape, data.X.dtype, data.y.tolist()
    ((4, 3), dtype('float32'), [0, 1, 0, 1])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EmbeddingFileError(f"{path}: no such file.")
    arrays = {}
    if path.endswith(".npy"):
        try:
            arrays["X"] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:
            raise EmbeddingFileError(f"{path}: not a readable .npy file ({exc}).") from None
    elif path.endswith(".npz"):
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise EmbeddingFileError(f"{path}: not a readable .npz file.") from None
        with zf, np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            for key, names in NPZ_KEYS.items():
                name = next((n for n in names if n in present), None)
                if name is None:
                    continue
                member = name + ".npy"
                arr = _npz_member_memmap(path, zf, member) if (mmap and key == "X") else None
                if arr is None:
                    try:
                        arr = npz[name]
                    except ValueError as exc:  # object arrays (allow_pickle=False)
                        raise EmbeddingFileError(
                            f"{path}: key {name!r} cannot be read ({exc}); store "
                            "numbers or strings, not Python objects."
                        ) from None
                arrays[key] = arr
            if "X" not in arrays:
                raise EmbeddingFileError(
                    f"{path}: missing key 'X' (the embeddings; 'embeddings' is accepted "
                    f"too). The file has keys {sorted(present)}."
                )
    else:
        raise EmbeddingFileError(f"{path}: expected a .npy or .npz file.")

    X = arrays["X"]
    _check_finite_2d(X, path)
    for key in require:
        if arrays.get(key) is None:
            raise EmbeddingFileError(
                f"{path}: missing key {key!r}" + (
                    " (a .npy file holds embeddings only; use .npz)."
                    if path.endswith(".npy") else f" (accepted names: {NPZ_KEYS[key]}).")
            )
    y = arrays.get("y")
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise EmbeddingFileError(
                f"{path}: 'y' has shape {y.shape} but the embeddings have "
                f"{X.shape[0]} rows."
            )
    s = arrays.get("spurious")
    if s is not None:
        try:
            s = check_spurious(np.asarray(s), X.shape[0], name="spurious")
        except ValueError as exc:
            raise EmbeddingFileError(f"{path}: {exc}") from None
    return Bunch(X=X, y=y, spurious=s, path=path)


def save_embeddings(path, X, *, y=None, spurious=None):
    """Write embeddings (and labels and attribute) to an uncompressed ``.npz``.

    Uncompressed, so :func:`load_embeddings` can memory-map the embeddings.

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended if missing (numpy's rule).
    X : array-like of shape (n_samples, n_features)
        Embeddings.
    y : array-like of shape (n_samples,), default=None
        Class labels.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), default=None
        Spurious attribute.
    """
    arrays = {"X": np.asarray(X)}
    if y is not None:
        arrays["y"] = np.asarray(y)
    if spurious is not None:
        arrays["spurious"] = np.asarray(spurious)
    np.savez(path, **arrays)
