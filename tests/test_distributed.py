"""Grid search on a Dask cluster, with ``spurious`` routed, equals ``n_jobs=1``.

Every classifier of the registry (:func:`~sklearn_spur.utils.discovery.all_estimators`)
gets a small grid over one of its own numeric parameters, built from its
defaults, and a head when it declares it needs one (:func:`requirements`); so
does a ``Pipeline(TorchFeatureExtractor, DFRClassifier)``. Each search runs
under ``joblib.parallel_config(backend="dask")`` on a ``LocalCluster`` of two
worker processes (started and closed here) and must give the ``best_params_``
and mean test scores of the same search with ``n_jobs=1``.

scikit-learn floor: **1.9.1**. Metadata routing crossing the dask backend was
broken until scikit-learn PR #34077 ("FIX metadata routing with dask backend on
joblib", merged 2026-06-09, fixing issue #34005): dask's serialisation may
turn the routed-parameter ``Bunch`` into a plain ``dict``, and the attribute
access of the routing code (``routed_params.step.fit``) then failed,
intermittently, for a ``Pipeline`` inside a cross-validation. 1.9.1 has the
fix (item access throughout; see ``process_routing``'s docstring). Older
releases are skipped here, not reported as failures: the bug is theirs and is
intermittent. The package itself still supports 1.6 without dask.
"""

import inspect
from numbers import Integral, Real

import numpy as np
import pytest
import sklearn
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.utils.fixes import parse_version

from sklearn_spur.metrics import worst_group_scorer
from sklearn_spur.utils.discovery import all_estimators, requirements

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install "
    "'sklearn-spur[distributed]')")
joblib = pytest.importorskip("joblib")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(
    parse_version(sklearn.__version__) < parse_version("1.9.1"),
    reason="metadata routing through joblib's dask backend is broken before "
    "scikit-learn 1.9.1 (scikit-learn#34005, fixed by #34077)")

# Parameters never gridded: iteration limits, tolerances, seeds, caches.
_NOT_GRIDDED = {"max_iter", "tol", "random_state", "max_epochs", "batch_size",
                "patience", "verbose", "validation_fraction", "lr"}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True,
                                       threads_per_worker=1, dashboard_address=None,
                                       memory_limit="1GiB")
    with cluster, distributed.Client(cluster) as client:
        yield client


def _data(n=180, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.85, y, 1 - y)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += 1.5 * y
    X[:, 1] += 2.0 * s
    return X, y, s


def _maps(n=180, seed=0):
    """Activations (n, 4, 3, 3) for RRClArCNet: channel 0 carries y, 1 the attribute."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.85, y, 1 - y)
    A = rng.normal(size=(n, 4, 3, 3)).astype(np.float32)
    A[:, 0] += y[:, None, None]
    A[:, 1] += 2 * s[:, None, None]
    return A, y, s


def _conv_head():
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 2))


def _grid(estimator):
    """Two values of the estimator's first numeric parameter (its default and one
    more), read from its signature: nothing here names a method."""
    params = estimator.get_params(deep=False)
    for name in inspect.signature(type(estimator)).parameters:
        value = params.get(name)
        if name in _NOT_GRIDDED or isinstance(value, bool):
            continue
        if isinstance(value, Integral):
            return {name: [value, max(1, value // 2)]}
        if isinstance(value, Real):
            return {name: [value, value / 2 if value else 0.5]}
        if value is None and params.get(name + "s") is not None:
            # tuned inside from its grid (AFR's gamma, JTT's upweight): fix it
            return {name: [float(v) for v in list(params[name + "s"])[:2]]}
    raise AssertionError(f"{type(estimator).__name__}: no numeric parameter to grid")


def _cases():
    for name, cls in all_estimators("classifier"):
        head = inspect.signature(cls).parameters.get("head")
        needs_head = requirements(cls)["head"] == "required" or (
            head is not None and head.default is inspect.Parameter.empty)
        yield pytest.param(name, cls, needs_head, id=name)


def _build(cls, X, y, needs_head):
    signature = inspect.signature(cls).parameters
    fast = {"random_state": 0, "memory": False, "n_fits": 2, "max_epochs": 2,
            "lr": 1e-2, "batch_size": 64}
    kwargs = {k: v for k, v in fast.items() if k in signature}
    if needs_head:
        if X.ndim == 4:
            kwargs["head"] = _conv_head()
        else:
            kwargs["head"] = FrozenEstimator(LogisticRegression().fit(X, y))
    estimator = cls(**kwargs)
    with sklearn.config_context(enable_metadata_routing=True):
        unset = estimator.get_metadata_routing().fit.requests.get("spurious", 0) is None
        if unset and "spurious" in inspect.signature(cls.fit).parameters:
            # What a user writes for a method that declares no default request
            # (RRClArCNet, whose probe reads `spurious`).
            estimator.set_fit_request(spurious=True)
    return estimator


def _search(estimator, grid, X, y, s, n_jobs):
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(estimator, grid, scoring=worst_group_scorer, cv=3,
                              n_jobs=n_jobs, error_score="raise")
        if n_jobs == 1:
            return search.fit(X, y, spurious=s)
        with joblib.parallel_config(backend="dask"):
            return search.fit(X, y, spurious=s)


def _assert_same(local, remote):
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:NeuronTuner:UserWarning")
@pytest.mark.parametrize("name, cls, needs_head", list(_cases()))
def test_grid_search_on_dask_equals_one_process(client, name, cls, needs_head):
    X, y, s = _maps() if name == "RRClArCNet" else _data()
    estimator = _build(cls, X, y, needs_head)
    grid = _grid(estimator)
    local = _search(estimator, grid, X, y, s, n_jobs=1)
    remote = _search(estimator, grid, X, y, s, n_jobs=2)
    _assert_same(local, remote)


@pytest.mark.parametrize("final", ["ERMClassifier", "DFRClassifier"])
def test_pipeline_with_extractor_on_dask_equals_one_process(client, final):
    from sklearn.pipeline import make_pipeline

    import sklearn_spur
    from sklearn_spur import TorchFeatureExtractor

    X, y, s = _data()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 2))
    step = _build(getattr(sklearn_spur, final), X, y, needs_head=False)
    pipe = make_pipeline(TorchFeatureExtractor(net, progress=False), step)
    name = type(step).__name__.lower()
    grid = {f"{name}__{k}": v for k, v in _grid(step).items()}
    local = _search(pipe, grid, X, y, s, n_jobs=1)
    remote = _search(pipe, grid, X, y, s, n_jobs=2)
    _assert_same(local, remote)
