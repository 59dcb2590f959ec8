"""Shared fixtures: the cached benchmark datasets, loaded once per session."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The straightforward reference recipes live with the benchmarks that time them.
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def waterdigits():
    """Binary make_waterdigits (rho=0.95), trained once and cached on disk."""
    from sklearn_spur.datasets import make_waterdigits

    return make_waterdigits(n_classes=2, random_state=0)


@pytest.fixture(scope="session")
def waterdigits3():
    """Three-class make_waterdigits with three background colours."""
    from sklearn_spur.datasets import make_waterdigits

    return make_waterdigits(n_classes=3, random_state=0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist every worker gets one BLAS and one torch thread: two
    # workers with two threads each on two cores slow the thin matrix products
    # of the solvers several-fold (oversubscription).
    import threadpoolctl
    import torch

    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def label_free_digits():
    """make_waterdigits seeds 0-2, held-out data balanced (None) and correlated (0.95),
    with the test worst-group accuracy of ERM and of DFR given the true groups."""
    import warnings

    from sklearn_spur import DFRClassifier, ERMClassifier, worst_group_accuracy
    from sklearn_spur.datasets import make_waterdigits

    out = {}
    for seed in (0, 1, 2):
        for vr in (None, 0.95):
            b = make_waterdigits(random_state=seed, val_rho=vr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                erm = ERMClassifier(head=b.head).fit(b.X_train, b.y_train)
                dfr = DFRClassifier(random_state=0).fit(b.X_val, b.y_val,
                                                        spurious=b.spurious_val)
            b.wga_erm, b.wga_dfr = (
                worst_group_accuracy(b.y_test, e.predict(b.X_test),
                                     spurious=b.spurious_test) for e in (erm, dfr))
            out[seed, vr] = b
    return out


@pytest.fixture(scope="session")
def mean_test_wga(label_free_digits):
    """``mean_test_wga(val_rho, make)``: mean test WGA over seeds 0-2 of
    ``make(bunch).fit(X_val, y_val)`` (no group label passed)."""
    import numpy as np

    from sklearn_spur import worst_group_accuracy

    def mean_wga(vr, make, seeds=(0, 1, 2)):
        out = []
        for seed in seeds:
            b = label_free_digits[seed, vr]
            est = make(b).fit(b.X_val, b.y_val)
            out.append(worst_group_accuracy(b.y_test, est.predict(b.X_test),
                                            spurious=b.spurious_test))
        return float(np.mean(out))
    return mean_wga
