"""Embedding files: ``.npy`` (embeddings only) and ``.npz`` (embeddings, labels, attribute).

Also the completeness records of unfinished extractions: ``transform(X,
out="emb.npy")`` of :class:`~sklearn_spur.TorchFeatureExtractor` writes into
``emb.npy.partial`` and records its progress, per shard, in
``emb.npy.partial.shard-<i>-of-<k>.json``; the file gets its final name only
once every row is written. This module reads those records without torch.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
import zipfile
import zlib

import numpy as np
from sklearn.utils import Bunch

from ._core.groups import check_spurious

__all__ = ["EmbeddingFileError", "load_embeddings", "save_embeddings"]

#: Accepted names of each array in an ``.npz`` file (first match wins).
NPZ_KEYS = {
    "X": ("X", "embeddings"),
    "y": ("y", "labels"),
    "spurious": ("spurious",),
}
#: What each key is, for messages about a missing key.
_KEY_ROLES = {
    "y": "the class label of each sample, which the estimators fit and score on",
    "spurious": "the spurious attribute of each sample (e.g. the background); the "
                "group-aware methods and worst-group accuracy need it to form the "
                "(class, attribute) groups",
}
#: Suffix of the file an unfinished ``transform(X, out=path)`` writes into.
PARTIAL = ".partial"
RECORD_FORMAT = "sklearn-spur/partial-embeddings"
# What numpy and zipfile raise on a damaged or foreign file; zipfile raises
# NotImplementedError for a compression method it cannot read.
_READ_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error,
                KeyError, RuntimeError, NotImplementedError)


class EmbeddingFileError(ValueError):
    """An embedding file is missing, unreadable, unfinished or inconsistent."""


# ----------------------------------------------------------------- partial files


def record_path(partial, shard=(0, 1)):
    """The completeness record of shard ``i`` of ``k`` of a partial file."""
    return f"{partial}.shard-{shard[0]}-of-{shard[1]}.json"


def read_records(partial):
    """The completeness records of ``partial`` (a list of dicts, by shard)."""
    records = []
    for name in sorted(glob.glob(glob.escape(partial) + ".shard-*-of-*.json")):
        try:
            with open(name) as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue  # unreadable: as if absent (the shard is then not done)
        if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
            records.append(record)
    return records


def describe_partial(partial):
    """One sentence on how far an unfinished extraction got, and the fix."""
    records = read_records(partial)
    target = partial[: -len(PARTIAL)]
    if records:
        n = records[0]["shape"][0]
        done = sum(r["done"] - r["rows"][0] for r in records)
        k = records[0]["shard"][1]
        shards = {r["shard"][0]: r for r in records}
        missing = [i for i in range(k)
                   if i not in shards or shards[i]["done"] < shards[i]["rows"][1]]
        progress = (f"{done} of {n} rows written; unfinished shard(s) "
                    f"{missing} of {k}")
    else:
        progress = "no completeness record was found"
    return (f"{partial} is an unfinished extraction ({progress}), not a complete "
            f"embedding file. Finish it with extractor.transform(X, out={target!r}, "
            "resume=True) on the same model and inputs, or delete it.")


# ------------------------------------------------------------------------ readers


def _read_header(fh):
    """(shape, fortran, dtype) of the ``.npy`` header at the position of ``fh``."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _member_memmap(path, zf, member):
    """Memory-map an uncompressed ``.npy`` member of a zip; None when compressed.

    The local header, the ``.npy`` header and the member's size are checked
    against each other, so a truncated member or a forged header cannot map
    bytes that belong to something else.
    """
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError("its zip header is damaged")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        shape, fortran, dtype = _read_header(fh)
        offset = fh.tell()
        file_size = fh.seek(0, os.SEEK_END)
    if dtype.hasobject:
        return None  # the reading path refuses it with numpy's message
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    held = start + info.file_size - offset
    if nbytes != held or start + info.file_size > file_size:
        raise ValueError(
            f"its header says shape {shape} of {dtype} ({nbytes} bytes) but the "
            f"member holds {held} bytes"
            + (" and the file ends early" if start + info.file_size > file_size
               else "") + ": truncated, or a forged header")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def _read_member(zf, member):
    """Read a ``.npy`` member fully (CRC checked), refusing trailing bytes."""
    with zf.open(member) as fh:
        arr = np.lib.format.read_array(fh, allow_pickle=False)
        if fh.read(1):
            raise ValueError("the member holds more bytes than its header says: "
                             "a forged header")
    return arr


def _load_npz(path, mmap):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        with open(path, "rb") as fh:
            npy = fh.read(6) == b"\x93NUMPY"
        raise EmbeddingFileError(
            f"{path}: not a readable .npz file ({exc})"
            + ("; it is a .npy file: rename it to .npy." if npy else ".")) from None
    arrays = {}
    with zf:
        members = zf.namelist()
        present = [m[:-4] for m in members if m.endswith(".npy")]
        for key, names in NPZ_KEYS.items():
            found = [n for n in names if n in present]
            if len(found) > 1:
                raise EmbeddingFileError(
                    f"{path}: holds both {found[0]!r} and {found[1]!r}, two names for "
                    "the same array; keep one of them.")
            if not found:
                bare = [n for n in names if n in members]
                if bare:
                    raise EmbeddingFileError(
                        f"{path}: member {bare[0]!r} is not a .npy array (no .npy "
                        "suffix; the file was not written by numpy.savez). Write it "
                        "with sklearn_spur.save_embeddings or numpy.savez.")
                continue
            member = found[0] + ".npy"
            try:
                arr = _member_memmap(path, zf, member) if mmap and key == "X" else None
                if arr is None:
                    arr = _read_member(zf, member)
            except _READ_ERRORS as exc:
                hint = ("; store numbers or strings, not Python objects"
                        if "allow_pickle" in str(exc) else "")
                raise EmbeddingFileError(
                    f"{path}: key {found[0]!r} cannot be read ({exc}){hint}.") from None
            arrays[key] = arr
    if "X" not in arrays:
        raise EmbeddingFileError(
            f"{path}: missing key 'X' (the embeddings; 'embeddings' is accepted too). "
            f"The file has keys {sorted(present)}.")
    return arrays, sorted(present)


def _load_npy(path, mmap):
    with open(path, "rb") as fh:
        if fh.read(4) == b"PK\x03\x04":
            raise EmbeddingFileError(
                f"{path}: is a zip (.npz) file, not a .npy file; rename it to .npz.")
        fh.seek(0)
        try:
            shape, _, dtype = _read_header(fh)
        except _READ_ERRORS as exc:
            raise EmbeddingFileError(
                f"{path}: not a readable .npy file ({exc}).") from None
        expected = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = fh.seek(0, os.SEEK_END)
    if not dtype.hasobject and size != expected:
        raise EmbeddingFileError(
            f"{path}: its header says shape {shape} of {dtype} ({expected} bytes "
            f"with the header) but the file has {size} bytes: "
            + ("truncated." if size < expected else "a forged header or appended data."))
    try:
        return {"X": np.load(path, mmap_mode="r" if mmap else None,
                             allow_pickle=False)}
    except _READ_ERRORS as exc:
        raise EmbeddingFileError(
            f"{path}: not a readable .npy file ({exc}).") from None


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
    EmbeddingFileError
        A ``ValueError`` naming the file and what is wrong: a missing file, an
        unfinished extraction (``path.partial``, see
        :meth:`TorchFeatureExtractor.transform`; a sharded one names the
        shards still missing), a damaged, truncated or forged
        file or member, a missing key (with the keys the file has), mismatched
        lengths, non-finite values or a wrong rank.

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
    if path.endswith(PARTIAL):
        raise EmbeddingFileError(describe_partial(path))
    if not os.path.exists(path):
        if os.path.exists(path + PARTIAL):
            raise EmbeddingFileError(f"{path}: no such file. "
                                     + describe_partial(path + PARTIAL))
        raise EmbeddingFileError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise EmbeddingFileError(f"{path}: is a directory, not an embedding file.")
    if path.endswith(".npy"):
        arrays, keys = _load_npy(path, mmap), None
    elif path.endswith(".npz"):
        arrays, keys = _load_npz(path, mmap)
    else:
        raise EmbeddingFileError(f"{path}: expected a .npy or .npz file.")

    X = arrays["X"]
    _check_finite_2d(X, path)
    for key in require:
        if arrays.get(key) is None:
            raise EmbeddingFileError(
                f"{path}: missing key {key!r} ({_KEY_ROLES.get(key, 'required')}). "
                + ("A .npy file holds embeddings only; use .npz, written with "
                   f"save_embeddings(path, X, {key}=...)." if keys is None else
                   f"The file has keys {keys} (accepted names for it: "
                   f"{list(NPZ_KEYS[key])}); add it with save_embeddings(path, X, "
                   f"y=..., spurious=...)."))
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

    Uncompressed, so :func:`load_embeddings` can memory-map the embeddings. The
    file is written under a temporary name and renamed when complete, so an
    interrupted call never leaves a truncated file at ``path``; an existing
    file there is replaced.

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
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {"X": np.asarray(X)}
    if y is not None:
        arrays["y"] = np.asarray(y)
    if spurious is not None:
        arrays["spurious"] = np.asarray(spurious)
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise ValueError(f"save_embeddings: {key} holds Python objects; "
                             "load_embeddings reads numbers and strings only.")
        if key != "X" and (arr.ndim == 0 or len(arr) != len(arrays["X"])):
            raise ValueError(f"save_embeddings: {key} has shape {arr.shape} but X has "
                             f"{len(arrays['X'])} rows.")
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
