"""DFRClassifier against the straightforward DFR recipe: fit time, agreement, WGA.

The straightforward recipe (``reference_dfr.py``) fits the 7 tuning and 20 final
L1 logistic regressions one at a time with liblinear, standardising a float64
copy of the embeddings. DFRClassifier runs each batch of fits as one problem on
the float32 embeddings (no copy). Both are fitted on the same held-out set, with
the same C grid and number of fits, in this run.

    python benchmarks/bench_dfr.py [--n 20000] [--d 512] [--repeats 3] [--wide]

``--wide``: 50 x 5000 (fewer samples than features; the held-out set of a wide
backbone), where the solver takes its Gram / active-set path. Times are wall
and process CPU seconds (all threads), the median of the repeats.
"""

import argparse
import time

import numpy as np

from reference_dfr import dfr_reference, predict_reference
from sklearn_spur import DFRClassifier, worst_group_accuracy


def make_embeddings(n, d, seed=0, rho=0.5):
    """Embeddings shaped like a deep network's: post-ReLU, near a low-rank manifold.

    32 latent factors (one carries the class, one the spurious attribute, the rest
    nuisance) are mapped to ``d`` units by a fixed random matrix, plus a little
    noise, then rectified. ``rho`` is the fraction of samples whose attribute
    agrees with the class (0.5: a balanced held-out set).
    """
    rng = np.random.default_rng(seed)
    k = 32
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < rho, y, 1 - y)
    A = np.random.default_rng(123).normal(size=(k, d)) / np.sqrt(k)
    latent = rng.normal(size=(n, k))
    latent[:, 0] += 1.0 * (2 * y - 1)
    latent[:, 1] += 2.0 * (2 * s - 1)
    Z = np.maximum(latent @ A + 0.3 * rng.normal(size=(n, d)), 0)
    return Z.astype(np.float32), y, s


def median_of(fn, repeats):
    """(median wall s, median CPU s, last result) of ``repeats`` calls."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus)), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--wide", action="store_true",
                        help="50 x 5000: fewer samples than features")
    args = parser.parse_args()
    n, d = (50, 5000) if args.wide else (args.n, args.d)

    X, y, s = make_embeddings(n, d)
    Xt, yt, st = make_embeddings(max(n // 2, 2000), d, seed=1)
    t_ref, c_ref, ref = median_of(
        lambda: dfr_reference(X, y, y * 2 + s, random_state=0), args.repeats)
    t_ours, c_ours, ours = median_of(
        lambda: DFRClassifier(random_state=0).fit(X, y, spurious=s), args.repeats)
    p_ref, p_ours = predict_reference(ref, Xt, [0, 1]), ours.predict(Xt)
    print(f"DFR on {n} x {d} float32 held-out embeddings "
          f"(7 tuning + 20 final fits; median of {args.repeats})")
    print(f"{'':<34}{'fit s':>8}{'CPU s':>8}{'C':>7}{'test WGA':>10}")
    print(f"{'straightforward recipe (liblinear)':<34}{t_ref:8.2f}{c_ref:8.2f}"
          f"{ref[3]:7.2f}{worst_group_accuracy(yt, p_ref, spurious=st):10.3f}")
    print(f"{'DFRClassifier':<34}{t_ours:8.2f}{c_ours:8.2f}{ours.C_:7.2f}"
          f"{worst_group_accuracy(yt, p_ours, spurious=st):10.3f}")
    print(f"speed-up (CPU): {c_ref / c_ours:.1f}x   prediction agreement: "
          f"{(p_ref == p_ours).mean():.4f}")


if __name__ == "__main__":
    main()
