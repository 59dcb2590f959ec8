"""Past one machine: distributed grid search, sharded extraction, memmap fits.

Prints three tables (issue 16):

1. wall time of ``GridSearchCV`` over ``SingleWeightEditor`` (``strengths``
   values x ``folds`` folds, ``spurious`` routed, ``worst_group_scorer``) with
   ``n_jobs=1``, loky ``n_jobs=2`` and a Dask ``LocalCluster`` of 2 worker
   processes;
2. extraction of a small model into ``out=`` (a lazily generated ``Dataset``,
   so the inputs take no memory): time and peak RSS of one process at two
   sizes, and 1 against 2 processes (:func:`sklearn_spur.extract_sharded`);
3. peak anonymous memory (``RssAnon`` of ``/proc/self/status``, sampled every
   2 ms: page cache and the memory-mapped file are not counted) above the
   level just before ``fit``, for every estimator of the registry fitted on a
   float32 memmap from :func:`sklearn_spur.load_embeddings`.

Every measurement runs in a fresh process. Linux only (``/proc``).

Usage::

    python benchmarks/bench_scale.py                      # the issue's sizes
    python benchmarks/bench_scale.py --grid-n 5000 --grid-d 256 --memmap-mb 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def _status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakAnon:
    """Samples RssAnon in a thread; ``peak`` is the largest value seen."""

    def __init__(self, every=0.002):
        self.every, self.peak, self.stop = every, _status("RssAnon"), False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, _status("RssAnon"))
            time.sleep(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def _child(kind, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, __file__, "--child", kind,
                          json.dumps(kwargs)], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _groups_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += 1.5 * y
    X[:, 1] += 2.0 * s
    return X, y, s


# ------------------------------------------------------------------ 1. grid search

def child_grid(n, d, strengths, folds, backend):
    import joblib
    import sklearn
    from sklearn.model_selection import GridSearchCV

    from sklearn_spur import SingleWeightEditor, worst_group_scorer

    X, y, s = _groups_data(n, d)
    search = GridSearchCV(SingleWeightEditor(),
                          {"strength": np.linspace(0.05, 1.0, strengths).tolist()},
                          scoring=worst_group_scorer, cv=folds,
                          n_jobs=1 if backend == "n_jobs=1" else 2)
    cluster = None
    if backend == "dask":
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    start = time.perf_counter()
    with sklearn.config_context(enable_metadata_routing=True), \
            joblib.parallel_config(backend="dask" if cluster else "loky"):
        search.fit(X, y, spurious=s)
    wall = time.perf_counter() - start
    if cluster:
        client.close()
        cluster.close()
    return {"wall": wall, "best": search.best_params_["strength"]}


# ------------------------------------------------------------------ 2. extraction

class LazyInputs(torch.utils.data.Dataset):
    """A Dataset whose rows are computed from their index: no memory for inputs."""

    def __init__(self, n, d=64):
        self.n, self.d = n, d

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.full((self.d,), (i % 97) / 97.0) + torch.arange(self.d) / self.d


def _small_model(d=64, width=256):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 2))


def child_extract(n, workers, folder):
    from sklearn_spur import TorchFeatureExtractor, extract_sharded

    extractor = TorchFeatureExtractor(_small_model(), batch_size=512, progress=False)
    out = os.path.join(folder, f"emb-{n}-{workers}.npy")
    start = time.perf_counter()
    if workers == 1:
        with PeakAnon() as anon:
            Z = extractor.transform(LazyInputs(n), out=out, overwrite=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        anon_peak = anon.peak
    else:
        Z = extract_sharded(extractor, LazyInputs(n), out, n_workers=workers,
                            overwrite=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        anon_peak = float("nan")
    wall = time.perf_counter() - start
    shape = Z.shape
    del Z
    os.unlink(out)
    return {"wall": wall, "peak_rss": peak, "peak_anon": anon_peak,
            "shape": list(shape)}


# ------------------------------------------------------------------ 3. memmap fits

def make_memmap(folder, megabytes, d=1024, seed=0):
    """A float32 .npy of about ``megabytes`` MiB, written in blocks, and its labels."""
    from numpy.lib.format import open_memmap

    n = megabytes * MiB // (4 * d)
    path = os.path.join(folder, "X.npy")
    X = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    for lo in range(0, n, 16384):
        hi = min(n, lo + 16384)
        block = rng.normal(size=(hi - lo, d)).astype(np.float32)
        block[:, 0] += 1.5 * y[lo:hi]
        block[:, 1] += 2.0 * s[lo:hi]
        X[lo:hi] = block
    X.flush()
    del X
    np.savez(os.path.join(folder, "labels.npz"), y=y, s=s)
    return path


def child_memmap(label, path, max_iter):
    import warnings

    from _registry import registry_fits
    from sklearn.linear_model import LogisticRegression

    from sklearn_spur import load_embeddings

    labels = np.load(os.path.join(os.path.dirname(path), "labels.npz"))
    y, s = labels["y"], labels["s"]
    X = load_embeddings(path).X
    head = LogisticRegression(max_iter=200).fit(np.asarray(X[:2000]), y[:2000])
    make, uses_s = registry_fits(head=head, max_iter=max_iter)[label]
    est = make()
    kwargs = {"spurious": s} if uses_s else {}
    warnings.simplefilter("ignore")
    base = _status("RssAnon")
    start = time.perf_counter()
    with PeakAnon() as anon:
        est.fit(X, y, **kwargs)
    return {"extra": anon.peak - base, "wall": time.perf_counter() - start,
            "file": os.path.getsize(path)}


# ------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid-n", type=int, default=50000)
    p.add_argument("--grid-d", type=int, default=2048)
    p.add_argument("--strengths", type=int, default=20)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--extract-n", type=int, nargs=2, default=[10000, 100000])
    p.add_argument("--memmap-mb", type=int, default=2048)
    p.add_argument("--max-iter", type=int, default=50,
                   help="solver iterations in the memmap fits (the peak comes early)")
    p.add_argument("--skip", nargs="*", default=[], choices=["grid", "extract", "memmap"])
    args = p.parse_args(argv)
    print(f"load average: {os.getloadavg()}, CPUs: {os.cpu_count()}")

    if "grid" not in args.skip:
        print(f"\n1. GridSearchCV(SingleWeightEditor), {args.strengths} strengths x "
              f"{args.folds} folds, {args.grid_n} x {args.grid_d} float32")
        print(f"{'backend':<18}{'wall s':>9}  best strength")
        for backend in ["n_jobs=1", "loky n_jobs=2", "dask"]:
            r = _child("grid", n=args.grid_n, d=args.grid_d,
                       strengths=args.strengths, folds=args.folds, backend=backend)
            print(f"{backend:<18}{r.get('wall', float('nan')):>9.1f}  "
                  f"{r.get('best', r.get('error'))}")

    if "extract" not in args.skip:
        with tempfile.TemporaryDirectory() as folder:
            print("\n2. Extraction into out= (MLP 64-256-256, batch 512, "
                  "lazily generated inputs)")
            print(f"{'rows':>8}{'procs':>6}{'wall s':>9}{'peak RSS MiB':>14}"
                  f"{'peak RssAnon MiB':>18}{'output MiB':>12}")
            runs = [(n, 1) for n in args.extract_n] + [(args.extract_n[-1], 2)]
            for n, workers in runs:
                r = _child("extract", n=n, workers=workers, folder=folder)
                if "error" in r:
                    print(f"{n:>8}{workers:>6}  {r['error']}")
                    continue
                print(f"{n:>8}{workers:>6}{r['wall']:>9.1f}{r['peak_rss'] / MiB:>14.0f}"
                      f"{r['peak_anon'] / MiB:>18.0f}"
                      f"{np.prod(r['shape']) * 4 / MiB:>12.0f}")
            print("(2 processes: peak RSS is that of the largest worker)")

    if "memmap" not in args.skip:
        from _registry import registry_fits

        with tempfile.TemporaryDirectory() as folder:
            path = make_memmap(folder, args.memmap_mb)
            size = os.path.getsize(path)
            print(f"\n3. Fit on a memory-mapped float32 file of {size / MiB:.0f} MiB "
                  f"(load_embeddings, d=1024; max_iter={args.max_iter}); target: "
                  "peak extra RssAnon <= 0.5 x file")
            print(f"{'estimator':<30}{'extra RssAnon MiB':>19}{'x file':>8}{'fit s':>8}")
            for label in registry_fits():
                r = _child("memmap", label=label, path=path, max_iter=args.max_iter)
                if "error" in r:
                    print(f"{label:<30}  {r['error']}")
                    continue
                print(f"{label:<30}{r['extra'] / MiB:>19.0f}"
                      f"{r['extra'] / size:>8.2f}{r['wall']:>8.1f}")
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, kwargs = sys.argv[2], json.loads(sys.argv[3])
        result = {"grid": child_grid, "extract": child_extract,
                  "memmap": child_memmap}[kind](**kwargs)
        print(json.dumps(result))
    else:
        main()
