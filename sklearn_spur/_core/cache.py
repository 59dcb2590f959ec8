"""In-memory LRU cache and array hashing, shared by the estimators that cache work.

:class:`~sklearn_spur.TorchFeatureExtractor` keeps embeddings (bounded in
bytes) and :class:`~sklearn_spur.SingleWeightEditor` keeps fitted sub-class
heads (bounded in entries), both keyed by a SHA-256 of what produced them:
``clone`` (and so every search) makes new instances, so these caches cannot
live on the instance.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["LRUCache", "update_hash"]

_HASH_CHUNK = 1 << 24


class LRUCache:
    """A thread-safe least-recently-used cache, bounded in entries and/or bytes.

    An entry may *pin* objects whose ``id()`` went into its key, so that those
    ids cannot be reused by other objects while the entry lives. Values are
    stored as given: callers decide whether to copy or freeze them.

    Parameters
    ----------
    max_entries : int, default=None
        Most entries kept (no limit when None).
    max_bytes : int, default=None
        Most bytes kept, as declared by :meth:`put` (no limit when None); a
        value larger than this is not kept at all.
    """

    def __init__(self, *, max_entries=None, max_bytes=None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        """The value stored under ``key`` (now the most recent), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key, value, *, nbytes=0, pins=()):
        """Store ``value`` under ``key``, evicting the least recent entries."""
        if self.max_bytes is not None and nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            self._entries[key] = (value, nbytes, pins)
            self._nbytes += nbytes
            while ((self.max_bytes is not None and self._nbytes > self.max_bytes)
                   or (self.max_entries is not None
                       and len(self._entries) > self.max_entries)):
                _, (_, evicted, _) = self._entries.popitem(last=False)
                self._nbytes -= evicted

    def clear(self):
        """Drop every entry and reset the hit and miss counts."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
            self.hits = self.misses = 0


def _sha256(a):
    return hashlib.sha256(np.ascontiguousarray(a).data).digest()


def update_hash(h, a):
    """Feed dtype, shape and bytes of array ``a`` to hash ``h``.

    Arrays above 32 MiB are hashed in ~16 MiB row chunks on every core
    (hashlib releases the GIL) and the chunk digests go to ``h`` in order. No
    copy of ``a`` beyond one chunk at a time, and none for a C-contiguous one.
    """
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.ndim == 0 or a.nbytes <= 2 * _HASH_CHUNK:
        h.update(_sha256(a))
        return
    rows = max(1, _HASH_CHUNK // max(1, a[:1].nbytes))
    chunks = [a[i:i + rows] for i in range(0, len(a), rows)]
    with ThreadPoolExecutor(min(len(chunks), os.cpu_count() or 1)) as pool:
        for digest in pool.map(_sha256, chunks):
            h.update(digest)
