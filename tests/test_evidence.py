"""head_evidence: the head's probabilities, predictions and mistakes, in one place
(the annotation-free probe direction and the template read it)."""

import numpy as np
import pytest

from sklearn_spur._core.evidence import head_evidence
from sklearn_spur._core.heads import LinearHead


@pytest.mark.parametrize("n_outputs", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_evidence_agrees_with_the_head(n_outputs, dtype):
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])[: max(n_outputs, 2)]
    head = LinearHead(rng.normal(size=(n_outputs, 4)), rng.normal(size=n_outputs),
                      classes)
    X = rng.normal(size=(200, 4)).astype(dtype)
    X[:3] = 0  # ties at a zero logit
    y = rng.choice(classes, 200)
    idx = np.searchsorted(classes, y)
    ev = head_evidence(head, X, idx)
    np.testing.assert_array_equal(head.classes[ev.pred], head.predict(X))
    np.testing.assert_array_equal(ev.wrong, head.predict(X) != y)
    proba = head.predict_proba(X)
    np.testing.assert_allclose(ev.proba_true, proba[np.arange(200), idx], rtol=1e-5)
    np.testing.assert_allclose(ev.confidence, proba.max(axis=1), rtol=1e-5)
    assert ev.proba_true.dtype == dtype


def test_extreme_logits_stay_finite():
    head = LinearHead(np.array([[1.0], [-1.0]]), np.zeros(2), np.array([0, 1]))
    ev = head_evidence(head, np.array([[1e10], [-1e10]], np.float32), [0, 0])
    np.testing.assert_array_equal(ev.proba_true, [1.0, 0.0])
    np.testing.assert_array_equal(ev.wrong, [False, True])
