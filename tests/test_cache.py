"""The shared LRU cache and array hashing."""

import hashlib
import threading

import numpy as np

from sklearn_spur._core.cache import LRUCache, update_hash


def test_lru_evicts_the_least_recent_entry_by_count_and_by_bytes():
    cache = LRUCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses) == (3, 1)

    cache = LRUCache(max_bytes=100)
    cache.put("x", "x", nbytes=60)
    cache.put("y", "y", nbytes=30)
    cache.put("z", "z", nbytes=30)  # 120 > 100: "x" goes
    assert cache.get("x") is None and cache.get("y") == "y" and cache.get("z") == "z"
    cache.put("huge", "h", nbytes=101)  # larger than the bound: never kept
    assert cache.get("huge") is None and cache.get("z") == "z"
    cache.put("z", "z2", nbytes=10)  # replacing an entry releases its bytes
    cache.put("w", "w", nbytes=60)
    assert cache.get("y") == "y" and cache.get("z") == "z2" and cache.get("w") == "w"
    cache.clear()
    assert cache.get("y") is None and (cache.hits, cache.misses) == (0, 1)


def test_pinned_objects_live_as_long_as_their_entry():
    cache = LRUCache(max_entries=1)
    pinned = object()
    cache.put("k", 1, pins=(pinned,))
    ident = id(pinned)
    del pinned
    assert cache._entries["k"][2][0].__class__ is object
    assert id(cache._entries["k"][2][0]) == ident
    cache.put("other", 2)  # evicts "k" and releases the pin
    assert "k" not in cache._entries


def test_concurrent_puts_and_gets_keep_the_bounds():
    cache = LRUCache(max_entries=5, max_bytes=50)

    def work(t):
        for i in range(500):
            cache.put((t, i % 9), i, nbytes=7)
            cache.get((t, (i + 3) % 9))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(cache._entries) <= 5 and cache._nbytes == 7 * len(cache._entries) <= 50
    assert cache.hits + cache.misses == 4 * 500


def _digest(a):
    h = hashlib.sha256()
    update_hash(h, a)
    return h.hexdigest()


def test_hash_follows_values_dtype_and_shape_not_memory_layout():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(50, 8)).astype(np.float32)
    large = rng.normal(size=(300_000, 16)).astype(np.float32)  # stacked twice: chunked
    for a in (small, large, np.vstack([large, large])):
        assert _digest(a) == _digest(np.asfortranarray(a)) == _digest(a.copy())
        changed = a.copy()
        changed[-1, -1] += 1
        assert _digest(changed) != _digest(a)
    assert _digest(small) != _digest(small.astype(np.float64))
    assert _digest(small) != _digest(small.reshape(100, 4))
