"""Where extracted embeddings go: a new array, the ``out`` array, or a ``.npy`` file.

``transform(X, out="emb.npy")`` writes into ``emb.npy.partial`` and keeps a
completeness record beside it (``emb.npy.partial.shard-0-of-1.json``: shape,
rows done, batch size and a fingerprint of the model, settings and inputs);
only a complete file is renamed to ``emb.npy``, atomically. An interrupted run
therefore never leaves a file that loads as complete, and ``resume=True``
continues it from the last recorded batch. The record is per shard so that
several processes can later fill one file, each its own rows.
"""

from __future__ import annotations

import glob
import json
import os
import time

import numpy as np
import torch
from numpy.lib.format import open_memmap

from .._io import (
    PARTIAL,
    RECORD_FORMAT,
    _read_header,
    describe_partial,
    read_records,
    record_path,
)

#: Seconds between two completeness records of a running extraction (and at
#: the end, or when it stops on an error or interrupt).
CHECKPOINT_SECONDS = 2.0


def check_out(out, *, overwrite, resume, shard=None):
    """``out`` as an ndarray, a path string or None; refuses what would lose data.

    With ``shard=(i, k)``, ``k > 1``, the partial file is shared by the shards:
    its existence is not a conflict (the per-shard records decide).
    """
    if out is None:
        return None
    if isinstance(out, np.ndarray):
        if out.dtype != np.float32 or not out.flags.writeable:
            raise ValueError(
                f"TorchFeatureExtractor: out must be a writable float32 array, got "
                f"dtype {out.dtype}{'' if out.flags.writeable else ', read-only'}.")
        return out
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError("TorchFeatureExtractor: out must be a .npy path or a float32 "
                        f"array, got {type(out).__name__}.")
    path = os.fspath(out)
    if path.endswith(".npz"):
        raise ValueError(
            f"TorchFeatureExtractor: out={path!r}: out= writes a memory-mapped .npy "
            "file (embeddings only). Use a .npy path, or keep the embeddings with "
            "their labels in a .npz: save_embeddings(path, Z, y=y, spurious=s).")
    if not path.endswith(".npy"):
        raise ValueError(f"TorchFeatureExtractor: out={path!r} must end in .npy (the "
                         "format load_embeddings reads).")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"TorchFeatureExtractor: out={path!r}: the folder "
                                f"{folder} does not exist.")
    partial = path + PARTIAL
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"TorchFeatureExtractor: {path} exists; pass overwrite=True to replace it "
            "(it stays as it is until the new file is complete).")
    sharing = shard is not None and shard[1] > 1
    if os.path.exists(partial) and not (resume or overwrite or sharing):
        raise FileExistsError(
            f"TorchFeatureExtractor: {describe_partial(partial)} Pass resume=True to "
            "finish it, or overwrite=True to start over.")
    return path


class Sink:
    """Receives one ``(b, *shape)`` float32 tensor per batch (``(b, d)`` once pooled)
    and writes it to the output.

    The output is allocated once the width ``d`` is known: a new array or the
    ``out`` array. From CUDA a batch is copied with ``non_blocking=True`` and
    written only when the next batch has been launched (no sync per batch, no
    device memory growth). With an unknown number of rows, blocks are
    concatenated at the end.
    """

    #: First row of the output this sink fills (a shard's first row).
    offset = 0

    def __init__(self, n, out=None, start=0):
        self.n, self.out = n, out
        self.result, self.blocks, self.pos, self.pending = None, [], start, None

    def add(self, feats):
        if feats.device.type == "cuda":
            host = feats.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.flush()
            self.pending = (host, event)
        else:
            self.flush()
            self.write(feats.cpu().numpy())

    def flush(self):
        if self.pending is not None:
            host, event = self.pending
            self.pending = None
            event.synchronize()
            self.write(host.numpy())

    def _allocate(self, rest):
        shape = (self.n, *rest)
        if self.out is None:
            return np.empty(shape, np.float32)
        if self.out.shape != shape:
            raise ValueError(
                f"out has shape {self.out.shape} and dtype {self.out.dtype}; the "
                f"extraction needs a float32 array of shape {shape}.")
        return self.out

    def write(self, block):
        if self.n is None:
            self.blocks.append(block.copy())
            return
        if self.result is None:
            self.result = self._allocate(block.shape[1:])
        end = self.pos + len(block)
        if end > self.n or block.shape[1:] != self.result.shape[1:]:
            raise RuntimeError(
                f"the batches gave more rows or another width than expected "
                f"({end} x {block.shape[1:]} vs {self.result.shape}); every batch must "
                "give the same number of features and len(X) rows in all."
            )
        self.result[self.pos:end] = block
        self.pos = end

    def finish(self):
        self.flush()
        if self.n is None:
            return np.concatenate(self.blocks)
        if self.pos != self.n:
            raise RuntimeError(f"the inputs gave {self.pos} rows, expected {self.n}.")
        return self.result

    def abort(self):
        """The run stopped (error, interrupt): keep what is safely written."""


class FileRows:
    """Rows of a ``.npy`` file, written with ``os.pwrite``.

    What a writable memmap would keep resident in this process (every page
    written, until the map closes) goes to the page cache instead, so host
    memory stays flat however many rows the file has.
    """

    def __init__(self, path):
        with open(path, "rb") as fh:
            shape, fortran, dtype = _read_header(fh)
            self.start = fh.tell()
        if fortran or dtype != np.float32:
            raise ValueError(f"{path}: not a C-ordered float32 .npy file.")
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * 4
        self.fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))

    def __setitem__(self, rows, block):
        data = memoryview(np.ascontiguousarray(block, np.float32)).cast("B")
        pos = self.start + rows.start * self.row_bytes
        while len(data):
            if hasattr(os, "pwrite"):
                written = os.pwrite(self.fd, data, pos)
            else:  # Windows
                os.lseek(self.fd, pos, os.SEEK_SET)
                written = os.write(self.fd, data)
            data, pos = data[written:], pos + written

    def flush(self):
        os.fsync(self.fd)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class NpyFileSink(Sink):
    """Writes into ``path.partial`` with a completeness record; renames when done.

    Parameters
    ----------
    n : int
        Rows of the complete file.
    path : str
        The final ``.npy`` path (checked by :func:`check_out`).
    fingerprint : str
        Hash of what produced the rows (model, settings, inputs, batch size):
        a resumed run must have the same.
    batch_size : int
        Rows per batch; a resumed run starts at a batch boundary.
    resume : bool
        Continue ``path.partial`` where its record says it stopped.
    """

    def __init__(self, n, path, *, fingerprint, batch_size, resume):
        super().__init__(n)
        self.path, self.partial = path, path + PARTIAL
        self.record = {"format": RECORD_FORMAT, "version": 1,
                       "target": os.path.basename(path), "shape": None,
                       "dtype": "float32", "shard": [0, 1], "rows": [0, n], "done": 0,
                       "batch_size": batch_size, "fingerprint": fingerprint}
        self.last = time.monotonic()
        if resume and os.path.exists(self.partial):
            self._reopen()
        else:
            self._remove_partial()

    def _reopen(self):
        records = read_records(self.partial)
        expected = {k: self.record[k] for k in ("rows", "batch_size", "fingerprint")}
        if len(records) != 1 or any(records[0].get(k) != v
                                    for k, v in expected.items()):
            found = records[0] if len(records) == 1 else {"records": len(records)}
            differs = [k for k in expected if found.get(k) != expected[k]]
            raise ValueError(
                f"TorchFeatureExtractor: cannot resume {self.partial}: it was written "
                f"by another extraction ({', '.join(differs) or 'record'} differ: the "
                "model, its settings, the inputs or batch_size changed). Pass the same "
                "ones, or overwrite=True to start over.")
        self.record = records[0]
        self.result = FileRows(self.partial)
        if tuple(self.result.shape) != tuple(self.record["shape"]):
            raise ValueError(f"TorchFeatureExtractor: cannot resume {self.partial}: "
                             f"its shape {self.result.shape} is not the recorded "
                             f"{tuple(self.record['shape'])}; pass overwrite=True.")
        self.pos = self.record["done"]

    def _remove_partial(self):
        for name in [self.partial, *self._record_files()]:
            if os.path.exists(name):
                os.unlink(name)

    def _record_files(self):
        return glob.glob(glob.escape(self.partial) + ".shard-*-of-*.json")

    def _allocate(self, rest):
        self.record["shape"] = [self.n, *rest]
        header = open_memmap(self.partial, mode="w+", dtype=np.float32,
                             shape=(self.n, *rest))  # the body stays sparse
        del header
        self._save_record()
        return FileRows(self.partial)

    def _save_record(self):
        name = record_path(self.partial, self.record["shard"])
        with open(name + ".tmp", "w") as fh:
            json.dump(self.record, fh)
        os.replace(name + ".tmp", name)

    def checkpoint(self):
        """Flush the written rows to the file, then record them as done."""
        if self.result is None:
            return
        self.result.flush()
        self.record["done"] = self.pos
        self._save_record()
        self.last = time.monotonic()

    def write(self, block):
        super().write(block)
        if time.monotonic() - self.last > CHECKPOINT_SECONDS:
            self.checkpoint()

    def start(self):
        """First row still to compute (0 unless resumed)."""
        return self.pos

    def finish(self):
        super().finish()
        if self.result is None:  # resumed a file that was already complete
            self.result = FileRows(self.partial)
        self.checkpoint()
        self.result.close()
        self.result = None  # closed before the rename
        os.replace(self.partial, self.path)
        for name in self._record_files():
            os.unlink(name)
        return np.load(self.path, mmap_mode="r")

    def abort(self):
        try:
            self.flush()  # the batch in flight finished before the error
        except Exception:  # noqa: BLE001 - a CUDA error: that batch is not kept
            self.pending = None
        self.checkpoint()
        if self.result is not None:
            self.result.close()

