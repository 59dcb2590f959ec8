"""RRClArCNet: RR-ClArC's gradient penalty through the layers above a chosen one."""

import copy

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

from sklearn_spur import DFRClassifier, RRClArCClassifier, SpuriousProbe
from sklearn_spur.exceptions import MissingSpuriousError
from sklearn_spur.metrics import worst_group_accuracy
from sklearn_spur.torch.rrclarc_net import (
    RRClArCNet,
    concept_sensitivity,
    directional_logits,
    replace_layers,
    rrclarc_penalty,
)


def _maps(n=240, seed=0, dtype="float32"):
    """Activations (n, 4, 3, 3): channel 0 carries y, channel 1 the attribute."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    A = rng.normal(0, 1, (n, 4, 3, 3)).astype(dtype)
    A[:, 0] += y[:, None, None]
    A[:, 1] += 2 * s[:, None, None]
    return A, y, s


def _conv_head(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
                         nn.ReLU(), nn.Linear(5, 2))


def _fast(**kw):
    params = {"lr": 1e-2, "max_epochs": 4, "batch_size": 64, "random_state": 0}
    params.update(kw)
    return params


def test_sensitivity_is_the_spatially_averaged_gradient_per_output():
    head = _conv_head().eval()
    A, _, _ = _maps(20)
    V = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 2)))[0].T  # (2, 4)
    S = concept_sensitivity(head, A, V)
    a = torch.from_numpy(A).requires_grad_(True)
    out = head(a)
    for k in range(2):
        (g,) = torch.autograd.grad(out[:, k].sum(), a, retain_graph=True)
        want = g.mean((2, 3)).numpy() @ V.T
        np.testing.assert_allclose(S[:, k], want, rtol=1e-5, atol=1e-7)
    assert S.dtype == np.float32 and S.shape == (20, 2, 2)


def test_penalty_random_signs_and_their_expectation():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3).double()
    A = torch.randn(4000, 4, dtype=torch.float64, requires_grad=True)
    v = torch.nn.functional.normalize(torch.randn(1, 4, dtype=torch.float64), dim=1)
    Wv = lin.weight @ v[0]
    expected = rrclarc_penalty(lin(A), A, v, "expected")
    torch.testing.assert_close(expected, Wv.pow(2).sum())
    assert expected.requires_grad  # differentiable: it is trained through
    random = rrclarc_penalty(lin(A), A, v, "random")  # (s . W v)^2, mean over rows
    assert abs(random.item() - expected.item()) < 0.1 * expected.item()
    sens = directional_logits(lin(A), A, v)
    torch.testing.assert_close(sens[0, :, 0], Wv)


def test_linear_head_matches_last_layer_closed_form():
    """On embeddings with an nn.Linear, the fitted head is RRClArCClassifier's."""
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.85, y, 1 - y)
    X = np.c_[y + rng.normal(0, 1, n), s + rng.normal(0, 0.3, n),
              rng.normal(0, 1, (n, 2))]
    probe = SpuriousProbe().fit(X, y, spurious=s)
    lam = 2.0
    # Expected penalty lam (W0 v)^2 + lam (W1 v)^2 = lam / 2 (D v)^2 at the optimum.
    rr = RRClArCClassifier(probe=FrozenEstimator(probe), lam=lam / 2, C=1e8,
                           tol=1e-10, max_iter=10_000).fit(X, y)
    torch.manual_seed(0)
    head = nn.Linear(4, 2).double()
    est = RRClArCNet(head=head, probe=probe, lam=lam, signs="expected", freeze="none",
                     optimizer=torch.optim.LBFGS, lr=1.0, batch_size=-1,
                     max_epochs=5, validation_fraction=None, random_state=0,
                     net_params={"optimizer__max_iter": 500,
                                 "optimizer__tolerance_grad": 1e-12,
                                 "optimizer__tolerance_change": 1e-15,
                                 "optimizer__line_search_fn": "strong_wolfe"})
    est.fit(X, y)
    W = est.to_torch().weight.detach().numpy()
    b = est.to_torch().bias.detach().numpy()
    # float64 throughout; both solvers converged to gradients < 1e-10: the heads
    # agree to 1e-6 (the C=1e8 ridge of the closed form is below that).
    np.testing.assert_allclose(W[1] - W[0], rr.coef_[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(b[1] - b[0], rr.intercept_[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(est.decision_function(X), rr.decision_function(X),
                               atol=1e-5)
    assert W.dtype == np.float64


def test_fit_keeps_head_and_frozen_layers():
    A, y, s = _maps()
    head = _conv_head()
    before = copy.deepcopy(head.state_dict())
    probe = SpuriousProbe().fit(A.max((2, 3)), y, spurious=s)
    est = RRClArCNet(head=head, probe=probe, lam=10.0, **_fast()).fit(A, y, spurious=s)
    for k, t in head.state_dict().items():  # the user's module is untouched
        assert torch.equal(t, before[k])
    assert head.training and all(p.requires_grad for p in head.parameters())
    trained = est.net_.module_.state_dict()
    for k in ("0.weight", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.equal(trained[k], before[k]), k  # conv, BN and its statistics
    assert not torch.equal(trained["7.weight"], before["7.weight"])
    assert est.frozen_ == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert est.predict(A).shape == (len(A),) and est.predict_proba(A).shape == (len(A), 2)
    assert est.decision_function(A).dtype == np.float32
    # freeze="none" trains the convolution too
    est2 = RRClArCNet(head=head, probe=probe, lam=10.0, freeze="none", **_fast()).fit(A, y)
    assert not torch.equal(est2.net_.module_.state_dict()["0.weight"], before["0.weight"])


def test_random_state_and_labels():
    A, y, s = _maps()
    probe = FrozenEstimator(SpuriousProbe().fit(A.mean((2, 3)), y, spurious=s))
    labels = np.array(["a", "b"])[y]
    fits = [RRClArCNet(head=_conv_head(), probe=probe, lam=5.0, **_fast()).fit(A, labels)
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0].decision_function(A),
                                  fits[1].decision_function(A))
    assert set(fits[0].predict(A)) <= {"a", "b"}
    np.testing.assert_array_equal(fits[0].classes_, ["a", "b"])


def test_unfitted_probe_is_fitted_on_pooled_activations():
    A, y, s = _maps()
    for pooling, pool in (("max", A.max((2, 3))), ("mean", A.mean((2, 3)))):
        est = RRClArCNet(head=_conv_head(), cav_pooling=pooling, **_fast(max_epochs=1))
        est.fit(A, y, spurious=s)
        want = SpuriousProbe().fit(pool, y, spurious=s).directions_
        np.testing.assert_allclose(est.directions_, want, atol=1e-6)
    with pytest.raises(MissingSpuriousError, match="spurious"):
        RRClArCNet(head=_conv_head(), **_fast(max_epochs=1)).fit(A, y)


def test_clear_errors():
    A, y, s = _maps()
    probe = SpuriousProbe().fit(A.max((2, 3))[:, :3], y, spurious=s)
    with pytest.raises(ValueError, match="3 entries but A has 4 channels"):
        RRClArCNet(head=_conv_head(), probe=probe).fit(A, y)
    probe = SpuriousProbe().fit(A.max((2, 3)), y, spurious=s)
    with pytest.raises(ValueError, match="every parameter of head is frozen"):
        RRClArCNet(head=nn.Sequential(nn.Conv2d(4, 2, 3), nn.Flatten()), probe=probe).fit(A, y)
    with pytest.raises(ValueError, match="not submodules of head"):
        RRClArCNet(head=_conv_head(), probe=probe, freeze=["nope"]).fit(A, y)
    with pytest.raises(ValueError, match="one logit per class"):
        RRClArCNet(head=nn.Sequential(*_conv_head()[:-1]), probe=probe).fit(A, y)
    with pytest.raises(ValueError, match="A must be activations"):
        RRClArCNet(head=_conv_head(), probe=probe).fit(A[:, 0, 0, 0], y)


def test_replace_layers_writes_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), _conv_head())
    x = torch.randn(120, 3, 3, 3)
    with torch.no_grad():
        A = model[1](model[0](x)).numpy()
    y = (A[:, 0].mean((1, 2)) > np.median(A[:, 0].mean((1, 2)))).astype(int)
    s = (A[:, 1].mean((1, 2)) > np.median(A[:, 1].mean((1, 2)))).astype(int)
    probe = SpuriousProbe().fit(A.max((2, 3)), y, spurious=s)
    model.eval()
    before = copy.deepcopy(model.state_dict())
    upper = model[2]  # the layers above "1"
    est = RRClArCNet(head=upper, probe=probe, lam=1.0, **_fast()).fit(A, y)
    for patched in (est.replace_into(model), replace_layers(model, "2", est),
                    replace_layers(model, [f"2.{i}" for i in range(8)], est)):
        with torch.no_grad():
            pred = patched(x).argmax(1).numpy()
        np.testing.assert_array_equal(pred, est.predict(A))
        assert not patched.training
    for k, t in model.state_dict().items():
        assert torch.equal(t, before[k])
    with pytest.raises(ValueError, match="no submodule"):
        replace_layers(model, "9", est)
    with pytest.raises(ValueError, match="2 names for 8 layers"):
        replace_layers(model, ["2.0", "2.1"], est)
    with pytest.raises(ValueError, match="names=None needs a fitted"):
        replace_layers(model, None, nn.Linear(2, 2))


def _activations(model, images, layer):
    out = []
    hook = model.get_submodule(layer).register_forward_hook(
        lambda m, args, o: out.append(args[0]))
    try:
        with torch.no_grad():
            model(torch.from_numpy(images))
    finally:
        hook.remove()
    return out[0].numpy()


@pytest.fixture(scope="module")
def conv_block(waterdigits):
    """Activations at the input of features.11, the probe, and DFR's accuracy."""
    d, model = waterdigits, waterdigits.model.eval()
    A = {s: _activations(model, d[f"images_{s}"], "features.11")
         for s in ("train", "val", "test")}
    n_val = len(A["val"])
    probe = SpuriousProbe().fit(A["val"].reshape(n_val, 64, -1).max(-1), d.y_val,
                                spurious=d.spurious_val)
    dfr = DFRClassifier(random_state=0).fit(d.X_val, d.y_val, spurious=d.spurious_val)
    return A, probe, (dfr.predict(d.X_test) == d.y_test).mean()


@pytest.mark.parametrize("fit_on", ["train", "val"])
def test_waterdigits_effect_at_the_last_conv_block(waterdigits, conv_block, fit_on):
    """CAV at the input of features.11 (the last conv block's (n, 64, 4, 4) maps).

    The probe: pattern CAV on the balanced validation split, max-pooled. The upper
    layers (Linear(64, 64), fc) are fine-tuned on

    - "train", the reference's setting (the spuriously correlated training split),
      lam=1e4. Seed 0: sensitivity -98.9 %, WGA 0.281 -> 0.765, accuracy 0.817 vs
      DFR's 0.832. Over the data seeds 0-4 (mean, sd): sensitivity drop 98.4 %
      (0.3), WGA gain 0.397 (0.118; 0.485 0.239 0.341 0.381 0.538), accuracy minus
      DFR's -0.017 (0.008; -0.015 -0.031 -0.011 -0.012 -0.016). The network is
      trained here, with this machine's kernels: the thresholds sit 2 sd under
      the mean (gain 0.16 -> 0.15, accuracy -0.033 -> -0.04), not at seed 0's values.
    - "val", the split DFR uses (balanced), lam=300. Over seeds 0-4: sensitivity
      drop 95.8 % (1.8), WGA gain 0.43 (0.06), accuracy minus DFR's -0.014
      (0.005): every threshold is more than 2 sd below the mean.
    """
    d, model = waterdigits, waterdigits.model.eval()
    A, probe, dfr_acc = conv_block
    upper = nn.Sequential(*model.features[11:], model.fc)
    lam = 1e4 if fit_on == "train" else 300.0
    est = RRClArCNet(head=upper, probe=probe, lam=lam, lr=3e-3, max_epochs=12,
                     batch_size=256, random_state=0).fit(A[fit_on], d[f"y_{fit_on}"])

    def report(pred, module):
        S = concept_sensitivity(module, A["test"], probe.directions_)
        sens = np.abs(S[:, 1, 0] - S[:, 0, 0]).mean()
        wga = worst_group_accuracy(d.y_test, pred, spurious=d.spurious_test)
        return wga, (pred == d.y_test).mean(), sens

    with torch.no_grad():
        erm_pred = upper(torch.from_numpy(A["test"])).argmax(1).numpy()
    erm = report(erm_pred, upper)
    rr = report(est.predict(A["test"]), est.net_.module_)
    gain, slack = (0.15, 0.04) if fit_on == "train" else (0.20, 0.03)
    assert rr[2] <= 0.1 * erm[2], (erm, rr)  # sensitivity drops >= 90 %
    assert rr[0] >= erm[0] + gain, (erm, rr)  # WGA +15 / +20 points
    assert rr[1] >= dfr_acc - slack, (rr, dfr_acc)  # mean accuracy within 4 / 3 points
    # Written back, the model gives the estimator's predictions on raw images.
    patched = est.replace_into(model)
    with torch.no_grad():
        pred = patched(torch.from_numpy(d.images_test)).argmax(1).numpy()
    np.testing.assert_array_equal(pred, est.predict(A["test"]))
    assert patched.fc is not model.fc and patched.features[13] is not model.features[13]


def test_exposed_lazily():
    import sklearn_spur

    assert sklearn_spur.RRClArCNet is RRClArCNet


def test_linear_head_on_embeddings_default_training_and_write_back():
    """A single nn.Linear on (n, d) embeddings, random signs, written back by identity."""
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.9, y, 1 - y)
    Z = np.c_[y + rng.normal(0, 1, n), 2 * s + rng.normal(0, 0.3, n)].astype("float32")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Linear(2, 2))
    probe = SpuriousProbe().fit(Z, y, spurious=s)
    est = RRClArCNet(head=model[1], probe=probe, lam=10.0, lr=3e-2, max_epochs=30,
                     random_state=0).fit(Z, y, spurious=s)
    W = est.to_torch().weight.detach().numpy()
    v = probe.directions_[0]
    assert abs((W[1] - W[0]) @ v) < 0.1 * np.linalg.norm(W[1] - W[0])
    patched = est.replace_into(model)
    with torch.no_grad():
        pred = patched(torch.from_numpy(Z)).argmax(1).numpy()
    np.testing.assert_array_equal(pred, est.predict(Z))
    assert patched[1] is not model[1]


def test_extractor_keeps_the_maps_for_the_upper_layers():
    # pooling=None gives the (n, C, H, W) input of the layers above, as they are
    from sklearn_spur import TorchFeatureExtractor, replace_head

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    images = torch.randn(64, 3, 6, 6).numpy()
    ext = TorchFeatureExtractor(model, layer="2", capture="input", pooling=None)
    A = ext.fit_transform(images)
    assert A.shape == (64, 4, 6, 6) and A.dtype == np.float32
    with pytest.raises(ValueError, match="pooling=None"):
        ext.get_feature_names_out()
    y = (A.mean(axis=(1, 2, 3)) > np.median(A.mean(axis=(1, 2, 3)))).astype(int)
    s = (A[:, 0].mean(axis=(1, 2)) > np.median(A[:, 0].mean(axis=(1, 2)))).astype(int)
    probe = SpuriousProbe().fit(A.max(axis=(2, 3)), y, spurious=s)
    upper = nn.Sequential(*model[2:])
    est = RRClArCNet(head=upper, probe=probe, lam=1.0, **_fast()).fit(A, y)
    patched = replace_head(model, None, est)
    with torch.no_grad():
        raw = patched(torch.from_numpy(images)).argmax(1).numpy()
    np.testing.assert_array_equal(raw, est.predict(A))
