"""``verbose``: a tqdm bar of the fits on stderr, and nothing else changes."""

import numpy as np
import pytest
from sklearn.base import clone

from sklearn_spur import (
    AFRClassifier,
    DFRClassifier,
    JTTClassifier,
    NeuronTuner,
    SingleWeightEditor,
)
from sklearn_spur._core.progress import progress_bar


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    units = np.c_[2 * y - 1, 1 - 2 * y, 2 * s - 1, 1 - 2 * s, -np.ones((n, 4))]
    X = np.maximum(0, units + rng.normal(0, .8, units.shape)).astype(np.float32)
    return X, y, s


CASES = [
    (DFRClassifier(Cs=(1.0, 0.1, 0.01), n_fits=3, random_state=0), True,
     ("coef_", "intercept_", "C_")),
    (NeuronTuner(random_state=0), False, ("coef_", "intercept_", "mask_")),
    (SingleWeightEditor(strength="auto", memory=False, random_state=0), True,
     ("subclass_coef_", "subclass_intercept_", "strength_")),
    (AFRClassifier(gammas=(0.5, 2.0), lams=(0.1,), random_state=0), False,
     ("coef_", "intercept_", "gamma_")),
    (JTTClassifier(upweights=(1.0, 5.0), random_state=0), False,
     ("coef_", "intercept_", "upweight_")),
]


@pytest.mark.parametrize("est, spurious, attrs", CASES,
                         ids=[type(c[0]).__name__ for c in CASES])
def test_verbose_shows_a_bar_and_changes_nothing(capsys, est, spurious, attrs):
    X, y, s = _data()
    kw = {"spurious": s} if spurious else {}
    quiet = clone(est).fit(X, y, **kw)
    assert capsys.readouterr().err == ""
    loud = clone(est).set_params(verbose=1).fit(X, y, **kw)
    err = capsys.readouterr().err
    assert f"{type(est).__name__}:" in err and "fit" in err
    for name in attrs:
        np.testing.assert_array_equal(getattr(loud, name), getattr(quiet, name))


def test_the_bar_counts_every_candidate_and_the_final_fit(capsys):
    X, y, s = _data()
    DFRClassifier(Cs=(1.0, 0.1, 0.01), n_fits=3, random_state=0,
                  verbose=2).fit(X, y, spurious=s)
    err = capsys.readouterr().err
    assert "3 candidates x 1 fold(s)" in err and "4/4" in err
    SingleWeightEditor(strength="auto", memory=False, verbose=2).fit(X, y, spurious=s)
    assert "2/2" in capsys.readouterr().err  # the head, then the one on a half


def test_silent_bar_is_a_no_op_with_the_same_interface():
    with progress_bar(0, total=3) as bar:
        bar.update(2)
        bar.set_postfix_str("x")
        bar.total = bar.n
    assert bar.n == bar.total == 2
