"""Fit / predict time and peak memory of every estimator, beside two baselines.

On synthetic float32 embeddings shaped like a deep network's (post-ReLU, near
a low-rank manifold; ``bench_dfr.make_embeddings``) with a spurious attribute
that agrees with the class for 90 % of the samples, every estimator is fitted
once with its default settings (DFRClassifier includes its C tuning, as the
recipe does), then predicts on the same ``n`` samples. In the same run, two
baselines on the same data:

- ``LogisticRegression()``: one scikit-learn fit (lbfgs, defaults);
- the straightforward DFR recipe of ``reference_dfr.py`` (7 tuning + 20 final
  liblinear L1 fits, one at a time, on a float64 standardised copy).

Times are wall-clock and process CPU seconds (all threads); the ratios use
CPU seconds, which a shared, busy machine disturbs less than wall time.
Ratios are ``estimator / baseline`` (below 1: faster or smaller). Peak memory
is the highest anonymous resident memory (Linux ``RssAnon``, sampled every
5 ms by a thread) above its level just before the call: torch, numpy and
everything else included, the input ``X`` excluded (it exists before).

Then how fit time grows with ``n`` and ``d`` (every estimator and the
LogisticRegression and reference DFR baselines; the reference DFR's float64
copies peak near 10 GB at 200k x 2048).

    python benchmarks/bench_speed.py [--n 50000] [--d 2048] [--quick] [--skip-scaling]

``--threads``: only one DFRClassifier fit on ``n x d`` with the BLAS threads left
at their default, with the solver's limit (``SOLVER_THREADS = 1``, the default
of ``sklearn_spur._core.solver``) and with the whole fit under
``threadpool_limits(1)``, interleaved, ``--repeats`` times each; medians of
wall and CPU seconds.

``--quick``: main table on 10k x 512, scaling over n in (10k, 50k), d = 512.
The full scaling includes 200k x 2048 float32 (1.6 GB for X; the estimators
must not copy it in float64, which would be 3.3 GB more).
"""

import argparse
import gc
import os
import sys
import threading
import time
import warnings

from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dfr import make_embeddings  # noqa: E402
from reference_dfr import dfr_reference, predict_reference  # noqa: E402

from _registry import registry_fits  # noqa: E402

from sklearn_spur import DFRClassifier, ERMClassifier  # noqa: E402


def _rss_anon():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


def measure(fn):
    """(wall seconds, CPU seconds, peak extra RssAnon bytes, result) of ``fn()``."""
    gc.collect()
    base = _rss_anon()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_anon())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stop.set()
    t.join()
    peak[0] = max(peak[0], _rss_anon())
    return elapsed, cpu, peak[0] - base, out


#: Estimators whose fit with a head only checks it (nothing to time): fitted
#: without one, as their default does (ERMClassifier: one logistic regression).
HEADLESS = {"ERMClassifier"}


def estimators(head):
    """name -> (fit(X, y, s) -> fitted, predict(fitted, X)), from the registry."""
    out = {}
    fits = registry_fits(head)
    headless = registry_fits(None)
    fits.update({name: headless[name] for name in HEADLESS if name in fits})
    for name, (make, uses_s) in fits.items():
        def fit(X, y, s, make=make, uses_s=uses_s):
            return make().fit(X, y, spurious=s) if uses_s else make().fit(X, y)
        predict = ((lambda m, X: m.transform(X)) if name.startswith("SpuriousProbe")
                   else (lambda m, X: m.predict(X)))
        out[name] = (fit, predict)
    return out


def baselines():
    return {
        "LogisticRegression": (lambda X, y, s: LogisticRegression().fit(X, y),
                               lambda m, X: m.predict(X)),
        "reference DFR": (
            lambda X, y, s: dfr_reference(X, y, 2 * y + s, random_state=0),
            lambda m, X: predict_reference(m, X, [0, 1])),
    }


def _ratio(mem, base):
    """Memory ratio; n/a when the baseline's peak is below 1 MiB (noise level)."""
    return f"{mem / base:.2f}" if base >= 2**20 else "n/a"


def main_table(n, d):
    X, y, s = make_embeddings(n, d, rho=0.9)
    head = FrozenEstimator(ERMClassifier().fit(X[:5000], y[:5000]))  # a trained head
    rows = {}
    for name, (fit, predict) in {**baselines(), **estimators(head)}.items():
        t_fit, c_fit, m_fit, model = measure(lambda: fit(X, y, s))
        t_pred, c_pred, m_pred, _ = measure(lambda: predict(model, X))
        rows[name] = (t_fit, c_fit, m_fit, t_pred, c_pred, m_pred)
        print(f"  {name}: fit {t_fit:.2f} s, {m_fit / 2**20:.0f} MiB", file=sys.stderr,
              flush=True)
        del model
    lr, ref = rows["LogisticRegression"], rows["reference DFR"]
    print(f"\nFit and predict on {n} x {d} float32 "
          f"(X itself: {X.nbytes / 2**20:.0f} MiB); "
          "peak memory = extra RssAnon during the call\n")
    print("| estimator | fit wall s | fit CPU s | CPU / LR | CPU / ref. DFR "
          "| fit peak MiB | mem / LR | mem / ref. DFR | predict wall s | predict CPU s "
          "| predict peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (tf, cf, mf, tp, cp, mp) in rows.items():
        print(f"| {name} | {tf:.2f} | {cf:.2f} | {cf / lr[1]:.2f} | "
              f"{cf / ref[1]:.2f} | "
              f"{mf / 2**20:.0f} | {_ratio(mf, lr[2])} | {_ratio(mf, ref[2])} | "
              f"{tp:.3f} | {cp:.3f} | {mp / 2**20:.0f} |")


def scaling(ns, ds):
    names = list(estimators(None)) + ["LogisticRegression", "reference DFR"]
    table = {}
    for d in ds:
        for n in ns:
            X, y, s = make_embeddings(n, d, rho=0.9)
            head = FrozenEstimator(ERMClassifier().fit(X[:5000], y[:5000]))
            every = {**estimators(head), **baselines()}
            for name, (fit, _) in every.items():
                _, t, _, model = measure(lambda: fit(X, y, s))
                table[(name, n, d)] = t
                del model
            print(f"  scaling {n} x {d} done", file=sys.stderr, flush=True)
            del X
    cols = [(n, d) for d in ds for n in ns]
    print("\nFit CPU time (s) against n and d (float32)\n")
    print("| estimator | " + " | ".join(f"{n // 1000}k x {d}" for n, d in cols) + " |")
    print("|---" + "|---:" * len(cols) + "|")
    for name in names:
        cells = [f"{table[(name, n, d)]:.2f}" if (name, n, d) in table else "n/a"
                 for n, d in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")


def threads_table(n, d, repeats):
    """One DFR fit with default, solver-limited and globally limited BLAS threads."""
    import contextlib

    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from sklearn_spur._core import solver

    X, y, s = make_embeddings(n, d, rho=0.9)
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    modes = {
        f"default BLAS threads ({max(blas)})": (None, contextlib.nullcontext),
        "solver limited to 1 thread (default)": (1, contextlib.nullcontext),
        "whole fit under threadpool_limits(1)": (
            None, lambda: threadpool_limits(1, user_api="blas")),
    }
    times = {name: [] for name in modes}
    saved = solver.SOLVER_THREADS
    try:
        for _ in range(repeats):
            for name, (limit, context) in modes.items():
                solver.SOLVER_THREADS = limit
                with context():
                    t, c, _, _ = measure(lambda: DFRClassifier(random_state=0).fit(
                        X, y, spurious=s))
                times[name].append((t, c))
                print(f"  {name}: {t:.2f} s wall, {c:.2f} s CPU", file=sys.stderr,
                      flush=True)
    finally:
        solver.SOLVER_THREADS = saved
    print(f"\nOne DFRClassifier fit on {n} x {d} float32, median of {repeats} "
          f"(load average at the end: {os.getloadavg()[0]:.1f})\n")
    print("| BLAS threads | fit wall s | fit CPU s |")
    print("|---|---:|---:|")
    for name, runs in times.items():
        wall, cpu = np.median(np.array(runs), axis=0)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-main", action="store_true")
    parser.add_argument("--threads", action="store_true",
                        help="only one DFR fit with and without BLAS thread limits")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, d = (10000, 512) if args.quick else (args.n, args.d)
    if args.threads:
        threads_table(n, d, args.repeats)
        return
    if not args.skip_main:
        main_table(n, d)
    if not args.skip_scaling:
        if args.quick:
            scaling((10000, 50000), (512,))
        else:
            scaling((10000, 50000, 200000), (512, 2048))


if __name__ == "__main__":
    main()
