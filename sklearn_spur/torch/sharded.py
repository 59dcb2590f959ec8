"""Several processes extracting one ``.npy`` file, each its own rows.

``TorchFeatureExtractor.transform(X, out="emb.npy", shard=(i, k))`` computes
shard ``i`` of ``k`` (contiguous rows, whole batches) and writes it into its
rows of ``emb.npy.partial``, which all the shards share; :func:`extract_sharded`
runs the ``k`` shards in ``k`` processes (``concurrent.futures`` with the
"spawn" context), one per GPU where there are several.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
import uuid

import numpy as np
import torch
from numpy.lib.format import open_memmap
from sklearn.base import clone
from torch.utils.data import DataLoader, Dataset, Subset

from .._io import PARTIAL, RECORD_FORMAT, load_embeddings, read_records, record_path
from . import _runtime
from ._files import FileRows, NpyFileSink, Sink, check_out

__all__ = ["extract_sharded"]


def shard_rows(n, shard, batch_size):
    """Rows ``(start, end)`` of shard ``i`` of ``k``: contiguous, whole batches.

    Shard boundaries fall on multiples of ``batch_size``, so every batch is the
    one a single process would run (the model sees the same inputs together:
    the rows are bitwise those of an unsharded extraction).
    """
    i, k = shard
    n_batches = -(-n // batch_size)
    return (min(n, i * n_batches // k * batch_size),
            min(n, (i + 1) * n_batches // k * batch_size))


class ShardFileSink(NpyFileSink):
    """Writes shard ``i`` of ``k`` into ``path.partial``, shared by all the shards.

    The shared file is created once, safely when shards race: a shard writes
    the header (the body is sparse) under a private name and links it to
    ``path.partial`` (``os.link`` fails when the name exists, as ``O_EXCL``
    does), so every shard either creates the file or opens the complete one
    another shard created. Each shard records its own progress
    (``path.partial.shard-<i>-of-<k>.json``) and never deletes what another
    may be writing: without ``resume`` it restarts only its own rows. The
    shard that completes last renames the file to ``path``.
    """

    def __init__(self, n, path, *, shard, fingerprint, batch_size, resume):
        start, end = shard_rows(n, shard, batch_size)
        if start == end:
            raise ValueError(
                f"TorchFeatureExtractor: shard {tuple(shard)} has no rows: {n} rows "
                f"make {-(-n // batch_size)} batches of {batch_size}, fewer than "
                f"{shard[1]} shards. Use at most that many shards.")
        Sink.__init__(self, end, start=start)
        self.offset, self.total = start, n
        self.path, self.partial = path, path + PARTIAL
        self.record = {"format": RECORD_FORMAT, "version": 1,
                       "target": os.path.basename(path), "shape": None,
                       "dtype": "float32", "shard": list(shard), "rows": [start, end],
                       "done": start, "batch_size": batch_size,
                       "fingerprint": fingerprint}
        self.last = time.monotonic()
        self._check_other_shards()
        mine = record_path(self.partial, shard)
        if resume and os.path.exists(mine) and os.path.exists(self.partial):
            self._reopen()
        elif os.path.exists(mine):
            os.unlink(mine)

    def _mine(self, records):
        return [r for r in records if r.get("shard") == self.record["shard"]]

    def _check_other_shards(self):
        keys = ("batch_size", "fingerprint")
        for other in read_records(self.partial):
            if other.get("shard", [None, None])[1] != self.record["shard"][1] or any(
                    other.get(key) != self.record[key] for key in keys):
                raise ValueError(
                    f"TorchFeatureExtractor: {self.partial} is being written by "
                    f"another extraction (shard {other.get('shard')}: another model, "
                    "settings, inputs, batch_size or number of shards). Finish that "
                    "one, or delete the file and its .json records (or pass "
                    "overwrite=True to extract_sharded) to start over.")

    def _reopen(self):
        (record,) = self._mine(read_records(self.partial)) or [None]
        if record is None or record.get("rows") != self.record["rows"]:
            raise ValueError(f"TorchFeatureExtractor: cannot resume shard "
                             f"{self.record['shard']} of {self.partial}: its record "
                             "is missing or covers other rows; pass overwrite=True.")
        self.record = record
        self.result = FileRows(self.partial)
        if list(self.result.shape) != list(record["shape"]):
            raise ValueError(f"TorchFeatureExtractor: cannot resume {self.partial}: "
                             f"its shape {self.result.shape} is not the recorded "
                             f"{tuple(record['shape'])}; pass overwrite=True.")
        self.pos = record["done"]

    def _allocate(self, rest):
        shape = (self.total, *rest)
        self.record["shape"] = list(shape)
        if not os.path.exists(self.partial):
            tmp = f"{self.partial}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                header = open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                del header
                os.link(tmp, self.partial)
            except FileExistsError:
                pass  # another shard created it first: open that one
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        result = FileRows(self.partial)
        if result.shape != shape:
            result.close()
            raise ValueError(
                f"TorchFeatureExtractor: {self.partial} has shape {result.shape}, "
                f"but this shard extracts rows of shape {shape[1:]} out of "
                f"{shape[0]}; delete it or pass overwrite=True to extract_sharded.")
        self._save_record()
        return result

    def finish(self):
        Sink.finish(self)
        if self.result is None:  # resumed a shard that was already complete
            self.result = FileRows(self.partial)
        self.checkpoint()
        self.result.close()
        self.result = None
        shape = tuple(self.record["shape"])
        try:
            rows = np.load(self.partial, mmap_mode="r")[self.offset:self.n]
        except FileNotFoundError:  # the other shards finished and renamed it
            return np.load(self.path, mmap_mode="r")[self.offset:self.n]
        self._rename_if_last(shape)
        return rows

    def _rename_if_last(self, shape):
        k = self.record["shard"][1]
        done = {r["shard"][0] for r in read_records(self.partial)
                if r.get("fingerprint") == self.record["fingerprint"]
                and r["shard"][1] == k and r["done"] >= r["rows"][1]}
        if len(done) < k:
            return
        try:
            os.replace(self.partial, self.path)
        except FileNotFoundError:
            return  # the other last shard renamed it
        for name in self._record_files():
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


def shard_inputs(X, start, end):
    """Rows ``start:end`` of the (checked) inputs, of the same kind."""
    if isinstance(X, DataLoader):
        return DataLoader(Subset(X.dataset, range(start, end)),
                          batch_size=X.batch_size, collate_fn=X.collate_fn,
                          num_workers=X.num_workers, pin_memory=X.pin_memory,
                          worker_init_fn=X.worker_init_fn)
    if isinstance(X, Dataset):
        return Subset(X, range(start, end))
    if hasattr(X, "iloc"):
        return X.iloc[start:end]
    return X[start:end]


def check_shard(shard, out):
    """``shard`` as a pair of ints ``(i, k)``, ``0 <= i < k``, with a path ``out``."""
    if shard is None:
        return None
    try:
        i, k = (int(v) for v in shard)
        ok = 0 <= i < k and (i, k) == tuple(shard)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"TorchFeatureExtractor: shard={shard!r} must be a pair "
                         "(i, k) of ints with 0 <= i < k: shard i of k.")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError("TorchFeatureExtractor: shard= writes into a shared .npy "
                        f"file; pass out='emb.npy' (got out={type(out).__name__}).")
    return i, k


def _run_shard(extractor, X, out, shard, device, threads):
    if threads:
        torch.set_num_threads(threads)
    if device is not None:
        extractor = clone(extractor).set_params(device=device)
    rows = extractor.transform(X, out=out, shard=shard, resume=True, overwrite=True)
    return len(rows)


def extract_sharded(extractor, X, out, *, n_workers=None, devices=None,
                    resume=False, overwrite=False):
    """Extract ``X`` into one ``.npy`` file with ``n_workers`` processes.

    Process ``i`` runs ``extractor.transform(X, out=out, shard=(i, k))``: it
    computes a contiguous slice of whole batches and writes it into its rows
    of ``out + ".partial"``; the last shard to finish renames the file to
    ``out``. The processes are started with ``concurrent.futures`` and the
    "spawn" context (safe with CUDA and threads).

    Parameters
    ----------
    extractor : TorchFeatureExtractor
        Its model and inputs are pickled to each process: pass ``X`` as a
        ``Dataset`` that reads lazily (or a small array), not a large array.
    X : array-like, tensor, list of str, Dataset or DataLoader
        Inputs of the model, of known length.
    out : str or path-like
        The ``.npy`` file to write.
    n_workers : int, default=None
        Number of processes and shards. None: one per device of ``devices``,
        else one per CUDA device when there are several, else 2.
    devices : list of str or torch.device, default=None
        Device of each process, e.g. ``["cuda:0", "cuda:1"]``. None: one CUDA
        device per process when there are several (``cuda:i % count``), else
        the extractor's ``device`` (CPU processes).
    resume : bool, default=False
        Finish an interrupted call: the batches the shards recorded as written
        are skipped, and the file is bitwise that of an uninterrupted run.
    overwrite : bool, default=False
        Replace an existing ``out`` and discard an unfinished one.

    Returns
    -------
    Z : numpy.memmap of shape (n_samples, n_features), float32
        The complete file, read-only.

    Examples
    --------
    >>> import os, tempfile, numpy as np, torch
    >>> from sklearn_spur import TorchFeatureExtractor, extract_sharded
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
    ...                           torch.nn.Linear(8, 2))
    >>> X = np.random.default_rng(0).normal(size=(300, 4)).astype("float32")
    >>> extractor = TorchFeatureExtractor(net, batch_size=64, progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "emb.npy")
    >>> Z = extract_sharded(extractor, X, path, n_workers=2)  # doctest: +SKIP
    >>> Z.shape  # doctest: +SKIP
    (300, 8)
    """
    path = check_out(out, overwrite=overwrite, resume=resume)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices is None and cuda > 1:
        devices = [f"cuda:{j % cuda}" for j in range(n_workers or cuda)]
    if devices is not None:
        devices = list(devices)
        n_workers = n_workers or len(devices)
        if len(devices) != n_workers:
            raise ValueError(f"extract_sharded: {len(devices)} devices for "
                             f"n_workers={n_workers}; give one device per process.")
    n_workers = int(n_workers or 2)
    if n_workers < 1:
        raise ValueError(f"extract_sharded: n_workers={n_workers} must be >= 1.")
    checked = _runtime.check_inputs(X, extractor.preprocess)
    n = _runtime.n_samples(checked)
    if n is None:
        raise ValueError("extract_sharded: X must have a known length (not an "
                         "IterableDataset).")
    batch_size = (checked.batch_size if isinstance(checked, DataLoader)
                  else extractor.batch_size)
    n_batches = -(-n // batch_size)
    if n_workers > n_batches:  # a shard needs at least one batch
        n_workers = n_batches
        devices = None if devices is None else devices[:n_workers]
    partial = path + PARTIAL
    if not resume:
        for name in [partial, *[record_path(partial, (r["shard"][0], r["shard"][1]))
                                for r in read_records(partial)]]:
            if os.path.exists(name):
                os.unlink(name)
    threads = None if devices else max(1, (os.cpu_count() or 1) // n_workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
        futures = [pool.submit(_run_shard, extractor, X, path, (i, n_workers),
                               None if devices is None else devices[i], threads)
                   for i in range(n_workers)]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return load_embeddings(path).X
