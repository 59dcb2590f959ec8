"""AFRClassifier: the objective it solves, and its effect where ERM fails."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from sklearn_spur import AFRClassifier, ERMClassifier, worst_group_accuracy
from sklearn_spur.datasets import make_waterdigits


def _afr_weights(X, y, W0, b0, gamma):
    p = softmax(X @ W0.T + b0, axis=1)[np.arange(len(y)), y]
    w = np.exp(-gamma * p)
    for c in np.unique(y):
        w[y == c] /= w[y == c].sum() * len(np.unique(y))
    return w


@pytest.mark.parametrize("n_classes", [2, 3])
def test_matches_a_direct_minimisation_of_the_objective(n_classes):
    rng = np.random.default_rng(0)
    n, d = 300, 5
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d)) + np.eye(n_classes, d)[y]
    W0 = rng.normal(size=(n_classes, d))
    b0 = rng.normal(size=n_classes)
    gamma, lam = 2.0, 0.05
    afr = AFRClassifier(head=(W0, b0), gamma=gamma, lam=lam, tol=1e-10,
                        max_iter=10_000).fit(X, y)

    w = _afr_weights(X, y, W0, b0, gamma)
    np.testing.assert_allclose(afr.sample_weight_, w, rtol=1e-10)
    K = 1 if n_classes == 2 else n_classes
    anchor = (W0[1:] - W0[:1]) if K == 1 else W0

    def objective(theta):
        W, b = theta[:K * d].reshape(K, d), theta[K * d:]
        z = X @ W.T + b
        if K == 1:
            z = np.c_[np.zeros(n), z]
        loss = -(w * log_softmax(z, axis=1)[np.arange(n), y]).sum() / w.sum()
        return loss + lam * ((W - anchor) ** 2).sum()

    theta0 = np.zeros(K * d + K)
    ref = minimize(objective, theta0, method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(afr.coef_, ref[:K * d].reshape(K, d), atol=1e-4)
    # softmax is unchanged by a common shift of the (unpenalised) intercepts
    centre = (lambda b: b - b.mean()) if K > 1 else (lambda b: b)
    np.testing.assert_allclose(centre(afr.intercept_), centre(ref[K * d:]), atol=1e-4)


def test_gamma_zero_is_class_balanced_and_lam_pulls_to_the_head():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(300, int), np.ones(100, int)]
    X = rng.normal(size=(400, 3)) + y[:, None]
    W0, b0 = np.array([[0.0, 0.0, 5.0]]), np.array([-1.0])
    afr = AFRClassifier(head=(W0, b0), gamma=0.0).fit(X, y)
    assert afr.sample_weight_[y == 0].sum() == pytest.approx(0.5)
    assert np.allclose(afr.sample_weight_[y == 0], afr.sample_weight_[y == 0][0])
    pulled = AFRClassifier(head=(W0, b0), gamma=1.0, lam=1e4).fit(X, y)
    np.testing.assert_allclose(pulled.coef_, W0, atol=1e-3)


def test_refuses_a_class_the_data_lacks():
    X = np.random.default_rng(0).normal(size=(20, 3))
    head = (np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="no sample of classes"):
        AFRClassifier(head=head).fit(X, np.arange(20) % 2)


def test_lifts_worst_group_accuracy_far_above_erm_on_waterdigits():
    # gamma chosen by worst-group accuracy on the validation split. Measured over
    # make_waterdigits seeds 0-4: ERM 0.26-0.45, gain +0.454 +- 0.070 (sd), so
    # +0.30 is 2.2 sd below the mean; seed 0 gains +0.51.
    b = make_waterdigits(random_state=0)
    erm = ERMClassifier(head=b.head).fit(b.X_train, b.y_train)
    wga_erm = worst_group_accuracy(b.y_test, erm.predict(b.X_test),
                                   spurious=b.spurious_test)
    fits = [AFRClassifier(head=b.head, gamma=g).fit(b.X_val, b.y_val)
            for g in (0.0, 0.5, 1.0, 2.0, 4.0)]
    val = [worst_group_accuracy(b.y_val, f.predict(b.X_val), spurious=b.spurious_val)
           for f in fits]
    best = fits[int(np.argmax(val))]
    wga = worst_group_accuracy(b.y_test, best.predict(b.X_test), spurious=b.spurious_test)
    assert wga >= wga_erm + 0.30, (wga_erm, wga, val)


# ------------------------------------- no group label anywhere (fit or select)
SEEDS = (0, 1, 2)


def test_default_selection_beats_erm_on_correlated_held_out_data(label_free_digits,
                                                                 mean_test_wga):
    # gamma and lam tuned by worst accuracy over the inferred groups
    # (discriminant) within classes; no group label. make_waterdigits(val_rho=
    # 0.95), test WGA, seeds 0-4: AFR 0.748 0.721 0.502 0.741 0.726, ERM 0.281
    # 0.445 0.336 0.416 0.257; gain +0.34 +- 0.13 (sd). Seeds 0-2: 0.657 vs ERM
    # 0.354 (+0.30), DFR with the true groups 0.755. Selecting with the true
    # groups gives the same choices: gamma=4 (the grid's largest; 6 and more
    # collapse to 0), so AFR's own limit, not the selection's.
    d = label_free_digits
    afr = mean_test_wga(0.95, lambda b: AFRClassifier(head=b.head, random_state=0))
    erm = np.mean([d[s, 0.95].wga_erm for s in SEEDS])
    dfr = np.mean([d[s, 0.95].wga_dfr for s in SEEDS])
    assert afr >= erm + 0.15, (afr, erm)
    # Below DFR with the true groups by 0.10 (seeds 0-2); infer_groups -> DFR
    # and the editor reach it (test_inference.py, test_editor.py).
    assert afr >= dfr - 0.25, (afr, dfr)


def test_default_selection_is_no_worse_on_balanced_held_out_data(mean_test_wga):
    # Balanced held-out data, seeds 0-4: tuned 0.792 0.830 0.785 0.804 0.797
    # against the old fixed gamma=1, lam=0.01: 0.792 0.830 0.785 0.750 0.797.
    tuned = mean_test_wga(None, lambda b: AFRClassifier(head=b.head, random_state=0))
    old = mean_test_wga(None, lambda b: AFRClassifier(head=b.head, gamma=1.0, lam=0.01))
    assert tuned >= old - 0.02, (tuned, old)


def test_worst_class_selection_stays_available_and_fails_here(label_free_digits):
    b = label_free_digits[0, 0.95]
    afr = AFRClassifier(head=b.head, selection="worst_class", random_state=0)
    afr.fit(b.X_val, b.y_val)
    wga = worst_group_accuracy(b.y_test, afr.predict(b.X_test),
                               spurious=b.spurious_test)
    assert wga < 0.5  # blind to the minority groups: 0.387 (inferred: 0.748)


def test_grids_are_validated_and_fixed_values_skip_selection():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.arange(60) % 2
    head = (np.ones((1, 3)), np.zeros(1))
    with pytest.raises(ValueError, match="gammas"):
        AFRClassifier(head=head, gammas=[-1.0]).fit(X, y)
    afr = AFRClassifier(head=head, gamma=1.0, lam=0.1).fit(X, y)
    assert (afr.gamma_, afr.lam_) == (1.0, 0.1) and afr.selection_scores_ == {}
