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
