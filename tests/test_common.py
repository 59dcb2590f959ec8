"""scikit-learn's estimator checks over every estimator of the registry.

The estimators come from :func:`sklearn_spur.utils.discovery.all_estimators`,
so a new method is checked without being listed here. scikit-learn's checks
call ``fit(X, y)`` without metadata: an estimator that cannot fit without the
spurious attribute (as it declares, :func:`requirements`) is checked through a
subclass that supplies a constant attribute when none is given (groups are
then the classes); everything else about it, its ``fit`` code included, is the
real estimator.
"""

import inspect

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import _num_samples

from sklearn_spur.utils.discovery import all_estimators, requirements

# Extra instances, or parameters that keep the checks fast; every estimator of
# the registry is checked with its defaults when it is not named here.
VARIANTS = {
    "DFRClassifier": [{"n_fits": 2, "random_state": 0}],
    "RRClArCClassifier": [{"tol": 1e-3}],
    "SingleWeightEditor": [{}, {"strength": 0.9, "memory": False}],
    "NeuronTuner": [{}, {"aggregate": "class"}],
    # the default grid's upweight 100 does not converge on the checks' tiny
    # separable data (a warning the suite turns into an error)
    "JTTClassifier": [{"upweights": (1.0, 5.0, 20.0)}],
}


def _with_default_spurious(cls):
    """A subclass whose fit derives `spurious` from X when none is passed."""

    def fit(self, X, y=None, *, spurious=None, **kwargs):
        if spurious is None:
            try:
                spurious = np.zeros(_num_samples(X), dtype=int)
            except TypeError:  # not array-like: let the estimator's validation say so
                spurious = None
        return cls.fit(self, X, y, spurious=spurious, **kwargs)

    fit.__doc__ = cls.fit.__doc__
    sub = type(cls.__name__, (cls,), {"fit": fit, "__module__": __name__})
    globals()[cls.__name__] = sub  # so that instances pickle
    return sub


def _constructible(cls):
    """Estimators whose every parameter has a default (not the torch extractor)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return all(p.default is not p.empty for p in params
               if p.name != "self" and p.kind is not p.VAR_KEYWORD)


def _estimators():
    ests = []
    for name, cls in all_estimators():
        if not _constructible(cls):
            continue
        needs = requirements(cls)
        if needs["group_labels"] != "none" and not needs["label_free"]:
            cls = _with_default_spurious(cls)
        ests += [cls(**params) for params in VARIANTS.get(name, [{}])]
    return ests


def test_registry_lists_every_method():
    names = {name for name, _ in all_estimators()}
    assert {"DFRClassifier", "ERMClassifier", "RRClArCClassifier", "NeuronTuner",
            "SingleWeightEditor", "SpuriousProbe"} <= names
    with pytest.raises(ValueError, match="type_filter"):
        all_estimators("regressor")


@parametrize_with_checks(_estimators())
def test_sklearn_compatible(estimator, check):
    check(estimator)
