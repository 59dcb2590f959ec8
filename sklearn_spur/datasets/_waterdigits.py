"""WaterDigits: a small, real spurious-correlation benchmark built on CPU in seconds.

scikit-learn's bundled handwritten digits, painted on a coloured background
whose colour agrees with the class in training and is independent of it in
validation and test, and a small CNN trained on them by ERM: the package's
stand-in for Waterbirds (Sagawa et al. 2020).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import tempfile
import textwrap
import time
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import get_data_home, load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params
from torch import nn
from torch.nn import functional as F

from ..metrics import group_report
from ._gaussians import _spurious_values

__all__ = ["make_waterdigits", "WaterDigitsCNN"]

# Bump whenever anything below changes what a call returns: it is part of the cache key.
_RECIPE_VERSION = "1"

# The recipe. Tuned so that ERM collapses on the worst group (see the docstring)
# while still learning the digits.
_RECIPE = {
    "image_size": 16,        # side of the RGB images the CNN sees
    "digit_size": 12,        # the 8x8 digit is upsampled to this, then shifted
    "split": (0.5, 0.25, 0.25),  # of the original digits: train, val, test
    "variants": 4,           # translated copies of every original digit
    "saturation": 0.6,       # background colour: 0.5 + saturation * (hue - 0.5)
    "noise": 0.1,            # std of the per-pixel Gaussian noise
    "epochs": 12,
    "lr": 3e-3,              # Adam's initial learning rate, cosine-annealed to 0
    "batch_size": 64,
}
_SPLITS = ("train", "val", "test")


class WaterDigitsCNN(nn.Module):
    """The small CNN that :func:`make_waterdigits` trains by ERM.

    Three 3x3 convolution blocks (batch norm, ReLU, max pooling), global
    average pooling, ``Linear(4 * width, n_embedding)`` and ReLU: the
    penultimate embedding. The head ``fc`` is ``Linear(n_embedding, n_classes)``.

    Parameters
    ----------
    n_classes : int, default=2
        Outputs of the head.
    width : int, default=16
        Channels of the first convolution (doubled at each block).
    n_embedding : int, default=64
        Size of the penultimate embedding.

    Attributes
    ----------
    features : torch.nn.Sequential
        Everything up to the embedding (the input of ``fc``).
    fc : torch.nn.Linear
        The classification head.
    """

    def __init__(self, n_classes=2, width=16, n_embedding=64):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                    nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, n_embedding), nn.ReLU(),
        )
        self.fc = nn.Linear(n_embedding, n_classes)

    def embed(self, x):
        """Penultimate embeddings: the input of ``fc``."""
        return self.features(x)

    def forward(self, x):
        return self.fc(self.features(x))


def _class_of_digit(digit, n_classes):
    # floor(digit * n_classes / 10): contiguous bins of near-equal size;
    # 2 classes -> digit >= 5.
    return np.asarray(digit) * n_classes // 10


def _palette(n_classes, saturation):
    hues = np.array([colorsys.hsv_to_rgb(k / n_classes, 1.0, 1.0)
                     for k in range(n_classes)], dtype=np.float32)
    return (0.5 + saturation * (hues - 0.5)).astype(np.float32)


def _render(digits, colour, palette, rng, recipe):
    """Paint upsampled, randomly shifted digits (ink in [0, 1]) on their colour."""
    size, inner = recipe["image_size"], recipe["digit_size"]
    n = len(digits)
    up = F.interpolate(torch.from_numpy(digits)[:, None], size=(inner, inner),
                       mode="bilinear", align_corners=False)[:, 0].numpy()
    ink = np.zeros((n, size, size), dtype=np.float32)
    shift = rng.integers(0, size - inner + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(shift):
        ink[i, dy:dy + inner, dx:dx + inner] = up[i]
    ink = ink[:, None]
    images = (1.0 - ink) * palette[colour][:, :, None, None] + ink  # white ink
    images += recipe["noise"] * rng.standard_normal(images.shape, dtype=np.float32)
    return images.astype(np.float32)


def _make_splits(n_classes, rho, random_state, recipe):
    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)
    index = np.arange(len(pixels))
    f_train, f_val, _ = recipe["split"]
    train_idx, rest = train_test_split(index, train_size=f_train,
                                       stratify=digits.target,
                                       random_state=random_state)
    val_idx, test_idx = train_test_split(rest, train_size=f_val / (1 - f_train),
                                         stratify=digits.target[rest],
                                         random_state=random_state)
    rng = np.random.default_rng(random_state)
    palette = _palette(n_classes, recipe["saturation"])
    out = {}
    for split, idx in zip(_SPLITS, (train_idx, val_idx, test_idx)):
        src = np.repeat(np.sort(idx), recipe["variants"])
        y = _class_of_digit(digits.target[src], n_classes).astype(np.int64)
        colour = _spurious_values(y, n_classes, rho, split != "train", rng)
        out[split] = {"images": _render(pixels[src], colour, palette, rng, recipe),
                      "y": y, "spurious": colour, "digit_index": src.astype(np.int64)}
    return out, palette


def _train(images, y, n_classes, random_state, recipe, verbose):
    # The initialisation draws from torch's global generator: seed a fork of it, so
    # that the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = WaterDigitsCNN(n_classes)
    gen = torch.Generator().manual_seed(random_state)
    X, y = torch.from_numpy(images), torch.from_numpy(y)
    bs, epochs = recipe["batch_size"], recipe["epochs"]
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(X) // bs))
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        total = 0.0
        for start in range(0, len(X), bs):
            batch = perm[start:start + bs]
            loss = F.cross_entropy(model(X[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        if verbose:
            print(f"[make_waterdigits] epoch {epoch + 1}/{epochs}: "
                  f"train loss {total / len(X):.4f}")
    return model.eval()


@torch.no_grad()
def _forward(model, images):
    emb = model.embed(torch.from_numpy(images))
    return emb.numpy(), model.fc(emb).argmax(1).numpy()


def _build(n_classes, rho, random_state, verbose):
    recipe = _RECIPE
    splits, palette = _make_splits(n_classes, rho, random_state, recipe)
    n_threads = torch.get_num_threads()
    # One thread: results independent of the core count, and no oversubscription.
    torch.set_num_threads(1)
    try:
        model = _train(splits["train"]["images"], splits["train"]["y"], n_classes,
                       random_state, recipe, verbose)
        arrays = {"palette": palette}
        scores = {}
        for split, d in splits.items():
            emb, pred = _forward(model, d["images"])
            arrays.update({f"{key}_{split}": val for key, val in d.items()})
            arrays[f"X_{split}"] = emb
            report = group_report(d["y"], pred, spurious=d["spurious"],
                                  missing="ignore")
            scores[split] = (report.mean_accuracy, report.worst_group_accuracy)
    finally:
        torch.set_num_threads(n_threads)
    return arrays, model, scores


def _descr(n_classes, rho, random_state, arrays, scores):
    r = _RECIPE
    n = {s: len(arrays[f"y_{s}"]) for s in _SPLITS}
    bins = [np.flatnonzero(_class_of_digit(np.arange(10), n_classes) == k)
            for k in range(n_classes)]
    mapping = "; ".join(f"class {k}: digit {b[0]}" if len(b) == 1
                        else f"class {k}: digits {b[0]}-{b[-1]}"
                        for k, b in enumerate(bins))
    paragraphs = [
        "A small, real spurious-correlation benchmark: the 1797 handwritten 8x8 digits "
        "of scikit-learn's load_digits, painted on a coloured background, and a small "
        "CNN (WaterDigitsCNN) trained on them by ERM.",
        f"Classes: class = floor(digit * {n_classes} / 10), i.e. {mapping}. Spurious "
        f"attribute: the background colour, {n_classes} values; colour k goes with "
        "class k. Groups are the (class, colour) pairs.",
        f"Images: every original digit is upsampled to {r['digit_size']}x"
        f"{r['digit_size']} and shifted at random inside a {r['image_size']}x"
        f"{r['image_size']} canvas, {r['variants']} times; white ink over the "
        f"background colour, plus Gaussian pixel noise (std {r['noise']}). The splits "
        "are made of the original digits (stratified by digit, "
        "{:g} / {:g} / {:g} of them), so no digit is in two splits; digit_index_* is "
        "every image's index in load_digits().".format(*r["split"]),
        f"train: {n['train']} images; the colour agrees with the class for a fraction "
        f"rho = {rho} of every class, the others are spread evenly over the other "
        f"colours. val: {n['val']} images, test: {n['test']} images; colours balanced "
        "within every class.",
        f"ERM: cross-entropy, Adam (learning rate {r['lr']:g}, cosine-annealed to 0), "
        f"{r['epochs']} epochs of batches of {r['batch_size']}, random_state = "
        f"{random_state}. The embeddings X_* are the {arrays['X_train'].shape[1]} "
        "post-ReLU inputs of the head model.fc, in eval mode. ERM accuracy, mean / "
        "worst-group: " + "; ".join(f"{s} {scores[s][0]:.3f} / {scores[s][1]:.3f}"
                                    for s in _SPLITS) + ".",
    ]
    title = f"WaterDigits (sklearn-spur, recipe version {_RECIPE_VERSION})"
    body = "\n\n".join(textwrap.fill(p, width=79) for p in paragraphs)
    return f"{title}\n{'=' * len(title)}\n\n{body}\n"


def _cache_paths(data_home, n_classes, rho, random_state):
    key = json.dumps({"version": _RECIPE_VERSION, "recipe": _RECIPE,
                      "n_classes": int(n_classes), "rho": float(rho),
                      "random_state": int(random_state)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(get_data_home(data_home)) / "sklearn_spur"
    stem = f"waterdigits_{digest}"
    return folder, folder / f"{stem}.npz", folder / f"{stem}.pt"


def _atomic_write(path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private to the owner
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load(npz_path, pt_path, n_classes):
    with np.load(npz_path, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    expected = {"palette", "DESCR"} | {f"{key}_{split}" for split in _SPLITS for key in
                                       ("X", "y", "spurious", "images", "digit_index")}
    if not expected <= arrays.keys():
        raise KeyError(f"incomplete cache entry {npz_path}")
    model = WaterDigitsCNN(n_classes)
    model.load_state_dict(torch.load(pt_path, map_location="cpu", weights_only=True))
    return arrays, model.eval()


@validate_params(
    {
        "n_classes": [Interval(Integral, 2, 10, closed="both")],
        "rho": [Interval(Real, 0, 1, closed="both")],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "data_home": [str, os.PathLike, None],
        "refresh": ["boolean"],
        "verbose": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_waterdigits(*, n_classes=2, rho=0.95, random_state=0, data_home=None,
                     refresh=False, verbose=False):
    """Handwritten digits on spuriously coloured backgrounds, with an ERM-trained CNN.

    A real spurious-correlation benchmark that builds in seconds on a CPU, the
    package's stand-in for Waterbirds. The 1797 8x8 digits of
    :func:`sklearn.datasets.load_digits` are binned into ``n_classes`` classes
    (``class = floor(digit * n_classes / 10)``; two classes: ``digit >= 5``),
    upsampled, shifted (4 images per digit) and painted in white ink on a
    background colour, the spurious attribute. In the training split colour
    ``k`` goes with class ``k`` for a fraction ``rho`` of every class; in the
    validation and test splits the colours are balanced within every class.
    The splits are made of the original digits, so the same handwriting never
    appears in two of them.

    A small CNN (:class:`WaterDigitsCNN`) is trained on the training split by
    ERM and, like ERM on Waterbirds, leans on the background: its worst-group
    accuracy on the test split is far below its mean accuracy. The embeddings
    ``X_*`` are the inputs of its head ``model.fc``.

    The result is cached under ``get_data_home(data_home) / "sklearn_spur"``
    (keyed by the parameters and the recipe's version): the first call takes
    about 10 seconds, later ones a fraction of a second.

    Parameters
    ----------
    n_classes : int, default=2
        Number of classes and of background colours, from 2 to 10.
    rho : float, default=0.95
        Fraction of the training images whose colour agrees with their class.
        ``1 / n_classes`` makes the colour independent of the class.
    random_state : int in [0, 2**32 - 1], default=0
        Seed of the split, the rendering and the training (numpy and torch).
        The same value gives the same arrays and weights, bit for bit, on a
        given machine and library versions.
    data_home : str or path-like, default=None
        Where to cache; see :func:`sklearn.datasets.get_data_home`.
    refresh : bool, default=False
        Rebuild and retrain even if a cached result exists.
    verbose : bool, default=False
        Print the training loss of every epoch and where the cache is.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With, for every split ``s`` in ``train``, ``val``, ``test``:

        - ``X_s`` : ndarray of shape (n, 64), float32: penultimate embeddings.
        - ``y_s`` : ndarray of shape (n,), int64: class.
        - ``spurious_s`` : ndarray of shape (n,), int64: background colour.
        - ``images_s`` : ndarray of shape (n, 3, 16, 16), float32: the inputs of
          ``model``.
        - ``digit_index_s`` : ndarray of shape (n,), int64: index of the
          image's original digit in ``load_digits()``.

        and ``model`` (the trained :class:`WaterDigitsCNN`, in eval mode, on
        CPU), ``head`` (``model.fc``), ``head_name`` (``"fc"``), ``classes``
        (``arange(n_classes)``), ``palette`` (RGB of every colour, shape
        (n_classes, 3)) and ``DESCR`` (the construction, split sizes and the
        ERM model's mean and worst-group accuracy per split).

    See Also
    --------
    make_spurious_gaussians : The synthetic recipe, without a network.

    Notes
    -----
    The recipe (image rendering, architecture, 12 epochs of Adam with a cosine
    schedule) is fixed and tuned so that ERM collapses while still learning
    the digits. Measured on the test split (mean / worst-group accuracy):
    two classes, ``random_state`` 0, 1, 2: 0.68 / 0.30, 0.73 / 0.37,
    0.69 / 0.29; three classes: 0.65 / 0.20, 0.71 / 0.40, 0.52 / 0.19. A
    logistic regression refit on the balanced validation embeddings reaches
    a worst-group accuracy of about 0.8 (two classes): the embeddings carry
    the digits. With more classes, at ``rho=0.95`` the colour explains so
    much of the training labels that the CNN learns little of the digits
    (five classes: 0.22 / 0.00); ``rho=0.8`` gives 0.82 / 0.56 there.

    Training runs on one CPU thread (the caller's setting is restored), so
    that the result does not depend on the machine's core count.

    References
    ----------
    .. [1] S. Sagawa, P. W. Koh, T. B. Hashimoto, P. Liang, "Distributionally
       Robust Neural Networks for Group Shifts: On the Importance of
       Regularization for Worst-Case Generalization", ICLR 2020 (Waterbirds).

    Examples
    --------
    >>> import torch
    >>> from sklearn_spur.datasets import make_waterdigits
    >>> from sklearn_spur.metrics import worst_group_accuracy
    >>> data = make_waterdigits(random_state=0)
    >>> data.X_train.shape, data.images_train.shape
    ((3592, 64), (3592, 3, 16, 16))
    >>> data.X_test.shape, data.head_name
    ((1800, 64), 'fc')
    >>> pred = data.head(torch.from_numpy(data.X_test)).argmax(1).numpy()
    >>> wga = worst_group_accuracy(data.y_test, pred, spurious=data.spurious_test)
    >>> bool((pred == data.y_test).mean() - wga > 0.3)
    True
    """
    folder, npz_path, pt_path = _cache_paths(data_home, n_classes, rho, random_state)
    arrays = model = None
    if not refresh and npz_path.exists() and pt_path.exists():
        try:
            arrays, model = _load(npz_path, pt_path, n_classes)
            if verbose:
                print(f"[make_waterdigits] loaded from {npz_path}")
        except Exception:  # an unreadable or incomplete entry is built again
            arrays = model = None
    if arrays is None:
        start = time.perf_counter()
        arrays, model, scores = _build(n_classes, rho, random_state, verbose)
        arrays["DESCR"] = np.array(_descr(n_classes, rho, random_state, arrays, scores))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # The weights first: the .npz appearing marks the entry complete.
            _atomic_write(pt_path, lambda f: torch.save(model.state_dict(), f))
            _atomic_write(npz_path, lambda f: np.savez(f, **arrays))
        except OSError as exc:
            warnings.warn(f"make_waterdigits: could not cache the result in {folder} "
                          f"({exc}); the next call will build it again.",
                          UserWarning, stacklevel=3)
        if verbose:
            print(f"[make_waterdigits] built in {time.perf_counter() - start:.1f} s, "
                  f"cached in {npz_path}")
    data = Bunch(model=model, head=model.fc, head_name="fc",
                 classes=np.arange(n_classes), palette=arrays.pop("palette"),
                 DESCR=str(arrays.pop("DESCR")))
    data.update(arrays)
    return data
