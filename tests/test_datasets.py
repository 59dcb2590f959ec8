"""Tests of sklearn_spur.datasets: make_waterdigits and make_spurious_gaussians."""

import pickle
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from sklearn_spur.datasets import (
    WaterDigitsCNN,
    make_spurious_gaussians,
    make_waterdigits,
)
from sklearn_spur.datasets import _waterdigits
from sklearn_spur.metrics import group_report, worst_group_accuracy

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------ WaterDigits
# One cached build per parameter set for the whole session (the default data home:
# a later session loads it in a fraction of a second).
@pytest.fixture(scope="session")
def wd2():
    return make_waterdigits(n_classes=2, random_state=0)


@pytest.fixture(scope="session")
def wd3():
    return make_waterdigits(n_classes=3, random_state=0)


@pytest.fixture
def short_recipe(monkeypatch):
    """One image per digit and one epoch: for the tests of caching and determinism.

    The recipe is part of the cache key, so these builds never meet the real ones.
    """
    monkeypatch.setitem(_waterdigits._RECIPE, "variants", 1)
    monkeypatch.setitem(_waterdigits._RECIPE, "epochs", 1)


def _predict(model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).argmax(1).numpy()


def test_waterdigits_contents(wd2):
    digits = load_digits()
    assert wd2.head is wd2.model.fc and wd2.head_name == "fc"
    assert isinstance(wd2.model, WaterDigitsCNN) and not wd2.model.training
    np.testing.assert_array_equal(wd2.classes, [0, 1])
    assert wd2.palette.shape == (2, 3)
    for split, n_min in zip(SPLITS, (3000, 1500, 1500)):
        X, y, s = wd2[f"X_{split}"], wd2[f"y_{split}"], wd2[f"spurious_{split}"]
        images, idx = wd2[f"images_{split}"], wd2[f"digit_index_{split}"]
        n = len(y)
        assert n >= n_min
        assert X.shape == (n, 64) and X.dtype == np.float32
        assert images.shape == (n, 3, 16, 16) and images.dtype == np.float32
        assert y.dtype == s.dtype == idx.dtype == np.int64
        # Post-ReLU embeddings, most units alive.
        assert X.min() >= 0 and (X.max(axis=0) > 0).mean() > 0.5
        # Binary classes are digit >= 5 of the image's original digit.
        np.testing.assert_array_equal(y, digits.target[idx] >= 5)
        assert set(np.unique(s)) == {0, 1}
    assert str(len(wd2.y_train)) in wd2.DESCR and "0.95" in wd2.DESCR


def test_waterdigits_class_bins():
    bins = [_waterdigits._class_of_digit(np.arange(10), k) for k in (2, 3, 5, 10)]
    np.testing.assert_array_equal(bins[0], [0] * 5 + [1] * 5)
    np.testing.assert_array_equal(bins[1], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(bins[2], np.arange(10) // 2)
    np.testing.assert_array_equal(bins[3], np.arange(10))


def test_waterdigits_splits_do_not_share_digits(wd2):
    idx = {split: wd2[f"digit_index_{split}"] for split in SPLITS}
    sets = {split: set(v.tolist()) for split, v in idx.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    # Every digit is used, and gives the same number of images.
    assert set.union(*sets.values()) == set(range(1797))
    counts = np.bincount(np.concatenate(list(idx.values())))
    assert counts.min() == counts.max() >= 3
    # Roughly half the digits train, a quarter each for val and test.
    assert abs(len(sets["train"]) / 1797 - 0.5) < 0.01
    assert abs(len(sets["val"]) - len(sets["test"])) <= 2


@pytest.mark.parametrize("fixture", ["wd2", "wd3"])
def test_waterdigits_group_frequencies(fixture, request):
    data = request.getfixturevalue(fixture)
    k = len(data.classes)
    for split in ("val", "test"):
        y, s = data[f"y_{split}"], data[f"spurious_{split}"]
        for c in range(k):
            counts = np.bincount(s[y == c], minlength=k)
            assert counts.max() - counts.min() <= 1, (split, c, counts)
    y, s = data.y_train, data.spurious_train
    assert abs((y == s).mean() - 0.95) < 0.002
    for c in range(k):
        assert abs((s[y == c] == c).mean() - 0.95) < 0.002
        other = np.bincount(s[(y == c) & (s != c)], minlength=k)
        other = np.delete(other, c)
        assert other.max() - other.min() <= 1


def test_waterdigits_erm_collapses(wd2):
    pred = _predict(wd2.model, wd2.images_test)
    with torch.no_grad():
        pred_head = wd2.head(torch.from_numpy(wd2.X_test)).argmax(1).numpy()
    assert (pred == pred_head).mean() > 0.999
    mean = (pred == wd2.y_test).mean()
    wga = worst_group_accuracy(wd2.y_test, pred, spurious=wd2.spurious_test)
    assert mean >= 0.6  # it learned the digits...
    assert mean - wga >= 0.3  # ...but leans on the background
    worst = group_report(wd2.y_test, pred, spurious=wd2.spurious_test).worst_group
    assert worst[0] != worst[1]  # the worst group has the "wrong" colour
    # In training, the colour agrees with the class and ERM fits it.
    train_pred = _predict(wd2.model, wd2.images_train)
    assert (train_pred == wd2.y_train).mean() > 0.95


def test_waterdigits_three_classes_collapse(wd3):
    pred = _predict(wd3.model, wd3.images_test)
    mean = (pred == wd3.y_test).mean()
    wga = worst_group_accuracy(wd3.y_test, pred, spurious=wd3.spurious_test)
    assert wd3.X_test.shape[1] == 64 and wd3.head.out_features == 3
    assert set(np.unique(wd3.y_test)) == set(np.unique(wd3.spurious_test)) == {0, 1, 2}
    assert mean > 1 / 3 + 0.1
    assert mean - wga >= 0.25


def test_waterdigits_embeddings_are_the_input_of_fc(wd2):
    images = torch.from_numpy(wd2.images_val[:300])
    with torch.no_grad():
        manual = wd2.model.features(images)
        logits = wd2.model(images)
    np.testing.assert_allclose(manual.numpy(), wd2.X_val[:300], rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        head_logits = wd2.head(torch.from_numpy(wd2.X_val[:300]))
    np.testing.assert_allclose(head_logits.numpy(), logits.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_waterdigits_model_pickles(wd2):
    clone = pickle.loads(pickle.dumps(wd2.model))
    images = torch.from_numpy(wd2.images_test[:50])
    with torch.no_grad():
        np.testing.assert_array_equal(clone(images).numpy(), wd2.model(images).numpy())


def test_waterdigits_cache(tmp_path, short_recipe):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = make_waterdigits(random_state=3, data_home=tmp_path)
    # Neither the caller's thread count nor its torch random state are touched.
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected_draw.numpy())
    files = sorted(p.name for p in (tmp_path / "sklearn_spur").iterdir())
    assert len(files) == 2 and {p.rsplit(".", 1)[1] for p in files} == {"npz", "pt"}

    start = time.perf_counter()
    cached = make_waterdigits(random_state=3, data_home=tmp_path)
    assert time.perf_counter() - start < 1.0
    for key in first:
        if isinstance(first[key], np.ndarray):
            np.testing.assert_array_equal(cached[key], first[key], err_msg=key)
    assert cached.DESCR == first.DESCR
    for (name, a), (_, b) in zip(first.model.state_dict().items(),
                                 cached.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not cached.model.training and cached.head is cached.model.fc

    # refresh=True trains again, into the same files, with the same result.
    npz = next((tmp_path / "sklearn_spur").glob("*.npz"))
    before = (npz.stat().st_ino, npz.stat().st_mtime_ns)
    refreshed = make_waterdigits(random_state=3, data_home=tmp_path, refresh=True)
    assert (npz.stat().st_ino, npz.stat().st_mtime_ns) != before
    np.testing.assert_array_equal(refreshed.X_test, first.X_test)

    # An unreadable entry is rebuilt instead of failing.
    npz.write_bytes(b"not a zip file")
    rebuilt = make_waterdigits(random_state=3, data_home=tmp_path)
    np.testing.assert_array_equal(rebuilt.X_test, first.X_test)
    # No temporary file is left behind.
    assert len(list((tmp_path / "sklearn_spur").iterdir())) == 2


def test_waterdigits_unwritable_cache_warns(tmp_path, short_recipe, monkeypatch):
    def refuse(path, write):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(_waterdigits, "_atomic_write", refuse)
    with pytest.warns(UserWarning, match="could not cache"):
        data = make_waterdigits(random_state=4, data_home=tmp_path)
    assert data.X_train.shape == (len(data.y_train), 64)
    assert not list((tmp_path / "sklearn_spur").glob("*.npz"))


def test_waterdigits_determinism(tmp_path, short_recipe):
    a = make_waterdigits(random_state=1, data_home=tmp_path / "a")
    b = make_waterdigits(random_state=1, data_home=tmp_path / "b")
    c = make_waterdigits(random_state=2, data_home=tmp_path / "a")
    for split in SPLITS:
        for key in ("X", "images", "y", "spurious", "digit_index"):
            np.testing.assert_array_equal(a[f"{key}_{split}"], b[f"{key}_{split}"])
    assert not np.array_equal(a.images_train, c.images_train)
    assert not set(a.digit_index_test.tolist()) == set(c.digit_index_test.tolist())
    assert np.abs(a.X_test - c.X_test).max() > 1e-2
    assert not torch.equal(a.model.fc.weight, c.model.fc.weight)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"rho": 1.5}, "rho"),
        ({"rho": -0.1}, "rho"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 11}, "n_classes"),
        ({"n_classes": 2.5}, "n_classes"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": None}, "random_state"),
        ({"refresh": "yes"}, "refresh"),
    ],
)
def test_waterdigits_invalid_parameters(params, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make_waterdigits(data_home=tmp_path, **params)
    assert not (tmp_path / "sklearn_spur").exists()


def test_waterdigits_rejects_positional_arguments():
    with pytest.raises(TypeError):
        make_waterdigits(2)


# -------------------------------------------------------------------------- Gaussians
def test_gaussians_contents():
    data = make_spurious_gaussians(1000, random_state=0)
    assert data.X.shape == (1000, 20) and data.X.dtype == np.float64
    assert data.y.dtype == data.spurious.dtype == np.int64
    assert list(data.feature_names[[0, 5, 10]]) == ["core0", "spurious0", "noise0"]
    np.testing.assert_allclose(np.linalg.norm(data.core_direction), 1)
    np.testing.assert_allclose(np.linalg.norm(data.spurious_direction), 1)
    assert data.core_direction @ data.spurious_direction == 0
    assert np.flatnonzero(data.core_direction).tolist() == list(range(5))
    assert np.flatnonzero(data.spurious_direction).tolist() == list(range(5, 10))
    assert "rho = 0.9" in data.DESCR
    np.testing.assert_array_equal(np.bincount(data.y), [500, 500])
    # Exactly a fraction rho of every class agrees with its attribute.
    for c in (0, 1):
        assert (data.spurious[data.y == c] == c).mean() == 0.9


def test_gaussians_determinism():
    a = make_spurious_gaussians(300, random_state=0, noise_correlation=0.3)
    b = make_spurious_gaussians(300, random_state=0, noise_correlation=0.3)
    c = make_spurious_gaussians(300, random_state=1, noise_correlation=0.3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.spurious, b.spurious)
    assert not np.array_equal(a.X, c.X)
    # The distribution does not depend on the seed.
    np.testing.assert_array_equal(a.spurious_direction, c.spurious_direction)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_gaussians_balanced_groups(n_classes):
    n = 50 * n_classes**2
    data = make_spurious_gaussians(n, n_classes=n_classes, balanced=True,
                                   random_state=0)
    groups = np.bincount(data.y * n_classes + data.spurious, minlength=n_classes**2)
    np.testing.assert_array_equal(groups, 50)
    # Not a multiple of the number of groups: balanced up to one sample.
    data = make_spurious_gaussians(n + 7, n_classes=n_classes, balanced=True,
                                   random_state=0)
    groups = np.bincount(data.y * n_classes + data.spurious, minlength=n_classes**2)
    assert groups.max() - groups.min() <= 1


@pytest.mark.parametrize("n_classes", [2, 3])
def test_gaussians_means_follow_the_recipe(n_classes):
    data = make_spurious_gaussians(30000, n_classes=n_classes, rho=1 / n_classes,
                                   core_strength=2.0, spurious_strength=6.0,
                                   random_state=0)
    X, y, a = data.X, data.y, data.spurious
    for k in range(1, n_classes):
        # Adjacent classes: their means differ by core_strength along core_direction.
        diff = X[y == k].mean(0) - X[y == k - 1].mean(0)
        np.testing.assert_allclose(diff, 2.0 * data.core_direction, atol=0.08)
        diff = X[a == k].mean(0) - X[a == k - 1].mean(0)
        np.testing.assert_allclose(diff, 6.0 * data.spurious_direction, atol=0.08)
    # Unit-variance noise around the group means.
    g = y * n_classes + a
    means = np.stack([X[g == v].mean(0) for v in range(n_classes**2)])
    np.testing.assert_allclose((X - means[g]).var(0), 1.0, atol=0.05)


def test_gaussians_noise_correlation():
    data = make_spurious_gaussians(20000, rho=0.5, balanced=True, noise_correlation=0.6,
                                   random_state=0)
    g = data.y * 2 + data.spurious
    resid = data.X - np.stack([data.X[g == v].mean(0) for v in range(4)])[g]
    corr = np.corrcoef(resid, rowvar=False)
    off = ~np.eye(20, dtype=bool)
    shared = np.zeros((20, 20), dtype=bool)
    shared[5:, 5:] = True
    np.testing.assert_allclose(corr[off & shared], 0.6, atol=0.03)
    np.testing.assert_allclose(corr[off & ~shared], 0.0, atol=0.03)


def test_gaussians_pattern_beats_svm_under_correlated_noise():
    # The mean difference between attribute values stays on spurious_direction;
    # an SVM's weight vector tilts to cancel the correlated noise.
    data = make_spurious_gaussians(4000, rho=0.5, noise_correlation=0.5, random_state=0)
    X, y, a, v = data.X, data.y, data.spurious, data.spurious_direction
    pattern = np.mean([X[(y == c) & (a == 1)].mean(0) - X[(y == c) & (a == 0)].mean(0)
                       for c in (0, 1)], axis=0)
    svm = LinearSVC().fit(X, a).coef_[0]
    cos_pattern = pattern @ v / np.linalg.norm(pattern)
    cos_svm = svm @ v / np.linalg.norm(svm)
    assert cos_pattern > 0.99
    assert cos_svm < 0.9
    # Without correlated noise both find it, up to the estimation noise.
    data = make_spurious_gaussians(4000, rho=0.5, random_state=0)
    svm = LinearSVC().fit(data.X, data.spurious).coef_[0]
    assert svm @ data.spurious_direction / np.linalg.norm(svm) > cos_svm + 0.05


@pytest.mark.parametrize("n_classes", [2, 3])
def test_gaussians_erm_worst_group_gap(n_classes):
    train = make_spurious_gaussians(3000, n_classes=n_classes, rho=0.9, random_state=0)
    test = make_spurious_gaussians(3000, n_classes=n_classes, balanced=True,
                                   random_state=1)
    clf = LogisticRegression().fit(train.X, train.y)
    pred = clf.predict(test.X)
    mean = (pred == test.y).mean()
    wga = worst_group_accuracy(test.y, pred, spurious=test.spurious)
    assert mean > 1 / n_classes + 0.2
    assert mean - wga > 0.2
    # The gap comes from the correlation: trained on balanced data it closes.
    balanced = make_spurious_gaussians(3000, n_classes=n_classes, balanced=True,
                                       random_state=2)
    pred = LogisticRegression().fit(balanced.X, balanced.y).predict(test.X)
    assert worst_group_accuracy(test.y, pred, spurious=test.spurious) > wga + 0.15


@pytest.mark.parametrize(
    "params, match",
    [
        ({"rho": 1.1}, "rho"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_core": 0}, "n_core"),
        ({"n_noise": -1}, "n_noise"),
        ({"noise_correlation": 1.0}, "noise_correlation"),
        ({"core_strength": -1.0}, "core_strength"),
        ({"n_samples": 0}, "n_samples"),
    ],
)
def test_gaussians_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        make_spurious_gaussians(**params)
