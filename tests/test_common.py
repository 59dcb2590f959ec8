"""scikit-learn's estimator checks over every estimator of the package.

scikit-learn's checks call ``fit(X, y)`` without metadata. Estimators that
*require* the spurious attribute (DFRClassifier, SpuriousProbe, RRClArCClassifier) are
therefore checked through a subclass that supplies a deterministic attribute
when none is given (a constant, so groups are classes); everything else about them,
their ``fit`` code included, is the real estimator.
"""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import _num_samples

import sklearn_spur as ss


def _with_default_spurious(cls):
    """A subclass whose fit derives `spurious` from X when none is passed."""

    def fit(self, X, y=None, *, spurious=None, **kwargs):
        if spurious is None:
            # one attribute value: groups are the classes
            try:
                spurious = np.zeros(_num_samples(X), dtype=int)
            except TypeError:  # not array-like: let the estimator's validation say so
                spurious = None
        return cls.fit(self, X, y, spurious=spurious, **kwargs)

    fit.__doc__ = cls.fit.__doc__
    sub = type(cls.__name__, (cls,), {"fit": fit, "__module__": __name__})
    globals()[cls.__name__] = sub  # so that instances pickle
    return sub


def _estimators():
    ests = [
        _with_default_spurious(ss.DFRClassifier)(n_fits=2, random_state=0),
        ss.ERMClassifier(),
        _with_default_spurious(ss.SpuriousProbe)(),
        _with_default_spurious(ss.RRClArCClassifier)(tol=1e-3),
        ss.SingleWeightEditor(),
        ss.SingleWeightEditor(strength=0.9, cache=False),
        ss.NeuronTuner(),
        ss.NeuronTuner(aggregate="class"),
    ]
    return ests


EXPECTED_FAILED = {
    # "CheckName": "reason",
}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
