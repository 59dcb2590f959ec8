"""Wall time and choice of ``diagnose`` on ``make_waterdigits``, with and without
annotations; whether the recommended method is the best one on test.

"With annotations": ``spurious_train`` and ``spurious_val`` are passed. "Without":
neither is; ``spurious_test`` is passed in both cases, for the report only (it
never influences the choice). ``X_test`` is the evaluation split.

    cd benchmarks
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench_diagnose.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from sklearn_spur import diagnose
from sklearn_spur.datasets import make_waterdigits


def run(seed, val_rho, annotated, n_boot):
    d = make_waterdigits(random_state=seed, val_rho=val_rho)
    labels = ({"spurious_train": d.spurious_train, "spurious_val": d.spurious_val}
              if annotated else {})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = diagnose(d.head, d.X_train, d.y_train, d.X_val, d.y_val,
                          X_test=d.X_test, y_test=d.y_test, spurious_test=d.spurious_test,
                          random_state=seed, n_boot=n_boot, **labels)
        report.to_html()
    seconds = time.perf_counter() - start
    rec = report.recommendation_
    wga = {r["name"]: r["worst_group_accuracy"] for r in report.methods_}
    return {"seconds": seconds, "recommended": rec["name"],
            "recommended_wga": wga[rec["name"]], "best": rec["best_on_evaluation"],
            "best_wga": max(wga.values()), "erm_wga": wga["ERM"],
            "match": rec["matches_best_on_evaluation"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    print("| held-out data | annotations | seed | seconds (diagnose + to_html) | "
          "recommended (test WGA) | best on test (WGA) | ERM WGA | match |")
    print("|---|---|---|---|---|---|---|---|")
    for val_rho, data in ((0.95, "correlated (95 %)"), (None, "balanced")):
        for annotated in (True, False):
            rows = [run(s, val_rho, annotated, args.n_boot) for s in args.seeds]
            for s, r in zip(args.seeds, rows):
                print(f"| {data} | {'yes' if annotated else 'no'} | {s} | "
                      f"{r['seconds']:.1f} | {r['recommended']} "
                      f"({r['recommended_wga']:.3f}) | {', '.join(r['best'])} "
                      f"({r['best_wga']:.3f}) | {r['erm_wga']:.3f} | "
                      f"{'yes' if r['match'] else 'no'} |")
            print(f"| {data} | {'yes' if annotated else 'no'} | mean | "
                  f"{np.mean([r['seconds'] for r in rows]):.1f} | "
                  f"({np.mean([r['recommended_wga'] for r in rows]):.3f}) | "
                  f"({np.mean([r['best_wga'] for r in rows]):.3f}) | "
                  f"{np.mean([r['erm_wga'] for r in rows]):.3f} | "
                  f"{sum(r['match'] for r in rows)}/{len(rows)} |")


if __name__ == "__main__":
    main()
