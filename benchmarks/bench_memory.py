"""Peak memory of ``fit`` for every estimator, as a multiple of the input's size.

The target (issue 9): fitting on 50k x 2048 float32 embeddings (400 MB) peaks at
most 3x the input's size above the baseline. Each estimator runs in a fresh
process; two measures are printed:

* ``tracemalloc``: peak of Python and numpy allocations during ``fit`` (numpy
  reports its buffers to tracemalloc); blind to torch's and BLAS's own buffers;
* ``rss``: peak resident set size (``ru_maxrss``) minus the resident size just
  before ``fit``: everything, allocator slack included.

The solver iterations are capped (``max_iter``), since the peak is reached in
the first iterations and the full fits would take long on 50k x 2048.

Usage::

    python benchmarks/bench_memory.py                 # 50000 x 2048, all estimators
    python benchmarks/bench_memory.py --n 10000 --d 512 --only DFR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _fits(max_iter):
    """Every estimator of the registry (``_registry.py``), plus a classifier probe."""
    import sklearn_spur as ss
    from _registry import registry_fits

    fits = registry_fits(max_iter=max_iter)
    fits["SpuriousProbe-logistic"] = (
        lambda: ss.SpuriousProbe("logistic", Cs=(1.0,), cv=2), True)
    return fits


def _make(name, max_iter):
    make, uses_spurious = _fits(max_iter)[name]
    return make(), uses_spurious


def _data(n, d, seed=0):
    """Post-ReLU-like float32 embeddings with a class unit and an attribute unit."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X[:, 0] += 2 * y
    X[:, 1] += 2 * s
    np.maximum(X, 0, out=X)
    return X, y, s


def _rss_now():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(name, n, d, max_iter):
    X, y, s = _data(n, d)
    est, uses_spurious = _make(name, max_iter)
    import torch  # noqa: F401  (imported before the baseline, as the package does)

    rss0 = _rss_now()
    tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if uses_spurious:
            est.fit(X, y, spurious=s)
        else:
            est.fit(X, y)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"estimator": name, "n": n, "d": d, "input_mb": X.nbytes / 2**20,
            "tracemalloc_ratio": peak / X.nbytes,
            "rss_ratio": max(rss_peak - rss0, 0) / X.nbytes, "fit_s": elapsed}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--max-iter", type=int, default=5)
    names = list(_fits(1))
    parser.add_argument("--only", action="append", choices=names)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.n, args.d, args.max_iter)))
        return 0
    print(f"fit on {args.n} x {args.d} float32 ({args.n * args.d * 4 / 2**20:.0f} MB), "
          f"max_iter={args.max_iter}; peak above baseline / input size (target <= 3)")
    print(f"{'estimator':<24}{'tracemalloc':>12}{'rss':>8}{'fit s':>8}")
    worst = 0.0
    for name in args.only or names:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--n", str(args.n), "--d",
             str(args.d), "--max-iter", str(args.max_iter)],
            capture_output=True, text=True)
        if proc.returncode:
            print(f"{name:<24} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        worst = max(worst, r["tracemalloc_ratio"], r["rss_ratio"])
        print(f"{name:<24}{r['tracemalloc_ratio']:12.2f}{r['rss_ratio']:8.2f}"
              f"{r['fit_s']:8.1f}")
    print(f"worst ratio: {worst:.2f} ({'within' if worst <= 3 else 'ABOVE'} the 3x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
