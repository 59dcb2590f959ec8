"""WaterDigits: a small, real spurious-correlation benchmark built on CPU in seconds.

scikit-learn's bundled handwritten digits, painted on a coloured background
whose colour agrees with the class in training and is independent of it in
validation and test, and a small CNN trained on them by ERM: the package's
stand-in for Waterbirds (Sagawa et al. 2020). The images are made in
``_waterdigits_images``, the network in ``_waterdigits_cnn``.
"""

from __future__ import annotations

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
from sklearn.datasets import get_data_home
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

from ..metrics import group_report
from ._waterdigits_cnn import (
    WaterDigitsCNN,
    deterministic_torch,
    forward,
    load_shipped,
    recipe_digest,
    shipped_file_digest,
    train_cnn,
)
from ._waterdigits_images import SPLITS as _SPLITS
from ._waterdigits_images import _class_of_digit, _make_splits

__all__ = ["WaterDigitsCNN", "make_waterdigits"]

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
    "stripe_depth": 0.5,     # stripes=...: darkening of the striped rows
}


def _model_for(splits, n_classes, rho, random_state, stripes, train, verbose):
    """The shipped network of this configuration, or one trained here."""
    digest = recipe_digest(_RECIPE, _RECIPE_VERSION, stripes)
    if not train:
        model = load_shipped(n_classes, rho, random_state, stripes, digest)
        if model is not None:
            return model, "shipped"
    d = splits["train"]
    with deterministic_torch():
        model = train_cnn(d["images"], d["y"], n_classes, random_state, _RECIPE,
                          verbose)
    return model, "trained"


def _build(n_classes, rho, random_state, val_rho, stripes, train, verbose):
    splits, palette = _make_splits(n_classes, rho, random_state, _RECIPE,
                                   val_rho=val_rho, stripes=stripes)
    model, source = _model_for(splits, n_classes, rho, random_state, stripes, train,
                               verbose)
    arrays = {"palette": palette}
    scores = {}
    with deterministic_torch():  # one thread, as in training
        for split, d in splits.items():
            emb, pred = forward(model, d["images"])
            arrays.update({f"{key}_{split}": val for key, val in d.items()})
            arrays[f"X_{split}"] = emb
            report = group_report(d["y"], pred, spurious=d["spurious"],
                                  missing="ignore")
            scores[split] = (report.mean_accuracy, report.worst_group_accuracy)
    return arrays, model, scores, source


def _descr(n_classes, rho, random_state, arrays, scores, val_rho, stripes, source):
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
        f"colours. val: {n['val']} images, "
        + ("colours balanced within every class" if val_rho is None else
           f"the colour agrees with the class for a fraction val_rho = {val_rho} of "
           "every class")
        + f". test: {n['test']} images; colours balanced within every class.",
    ]
    if stripes is not None:
        paragraphs.append(
            "Second shortcut (stripes_*): the background's texture, plain (0) or "
            f"darkened every k + 1 rows (k >= 1), {n_classes} values; texture k goes "
            f"with class k for a fraction {stripes} of every class in train"
            + ("" if val_rho is None else f" ({val_rho} in val)")
            + ", independently of the colour; every (class, colour, texture) group "
            "equally frequent in test" + (" and val." if val_rho is None else "."))
    weights = ("shipped with the package" if source == "shipped"
               else "trained on this machine")
    paragraphs.append(
        f"ERM: cross-entropy, Adam (learning rate {r['lr']:g}, cosine-annealed to 0), "
        f"{r['epochs']} epochs of batches of {r['batch_size']}, random_state = "
        f"{random_state}; weights {weights}. The embeddings X_* are the "
        f"{arrays['X_train'].shape[1]} post-ReLU inputs of the head model.fc, in eval "
        "mode. ERM accuracy, mean / worst-group: "
        + "; ".join(f"{s} {scores[s][0]:.3f} / {scores[s][1]:.3f}" for s in _SPLITS)
        + ".")
    title = f"WaterDigits (sklearn-spur, recipe version {_RECIPE_VERSION})"
    body = "\n\n".join(textwrap.fill(p, width=79) for p in paragraphs)
    return f"{title}\n{'=' * len(title)}\n\n{body}\n"


def _cache_paths(data_home, params):
    key = json.dumps({"version": _RECIPE_VERSION, "recipe": _RECIPE, **params},
                     sort_keys=True)
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


def _load(npz_path, pt_path, n_classes, stripes):
    with np.load(npz_path, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    keys = ("X", "y", "spurious", "images", "digit_index")
    keys += () if stripes is None else ("stripes",)
    expected = {"palette", "DESCR"} | {f"{k}_{s}" for s in _SPLITS for k in keys}
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
        "val_rho": [Interval(Real, 0, 1, closed="both"), None],
        "stripes": [Interval(Real, 0, 1, closed="both"), None],
        "train": ["boolean"],
        "data_home": [str, os.PathLike, None],
        "refresh": ["boolean"],
        "verbose": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_waterdigits(*, n_classes=2, rho=0.95, random_state=0, val_rho=None,
                     stripes=None, train=False, data_home=None, refresh=False,
                     verbose=False):
    """Handwritten digits on spuriously coloured backgrounds, with an ERM-trained CNN.

    A real spurious-correlation benchmark that builds in seconds on a CPU, the
    package's stand-in for Waterbirds. The 1797 8x8 digits of
    :func:`sklearn.datasets.load_digits` are binned into ``n_classes`` classes
    (``class = floor(digit * n_classes / 10)``; two classes: ``digit >= 5``),
    upsampled, shifted (4 images per digit) and painted in white ink on a
    background colour, the spurious attribute. In the training split colour
    ``k`` goes with class ``k`` for a fraction ``rho`` of every class; in the
    validation split (unless ``val_rho`` is given) and the test split the
    colours are balanced within every class. The splits are made of the
    original digits, so the same handwriting never appears in two of them.

    A small CNN (:class:`WaterDigitsCNN`) trained on the training split by ERM
    leans on the background, like ERM on Waterbirds: its worst-group accuracy
    on the test split is far below its mean accuracy. The embeddings ``X_*``
    are the inputs of its head ``model.fc``.

    **The same on every machine.** The package ships the trained weights of the
    configurations its tests, demo, examples and benchmarks use: two and three
    classes at ``rho`` 0.95 (``random_state`` 0 to 4) and 0.9 (0 to 2), and
    two classes at ``rho=0.95`` with ``stripes=0.8`` (0 to 2). For these the
    images, labels and weights are identical everywhere, and the embeddings
    differ between machines only by the float rounding of one forward pass
    (at most about 1e-5, on values of order 1): a prediction changes only for
    a sample that close to a decision boundary, so accuracies agree to about
    two or three decimals. Any
    other configuration, or ``train=True``, trains the CNN here
    (about 10 seconds): deterministic on one machine (one thread,
    deterministic algorithms), but torch's CPU kernels differ between
    processors and versions, so another machine trains another network, with
    other accuracies.

    The result is cached under ``get_data_home(data_home) / "sklearn_spur"``
    (keyed by the parameters and the recipe's version): later calls take a
    fraction of a second.

    Parameters
    ----------
    n_classes : int, default=2
        Number of classes and of background colours, from 2 to 10.
    rho : float, default=0.95
        Fraction of the training images whose colour agrees with their class.
        ``1 / n_classes`` makes the colour independent of the class.
    random_state : int in [0, 2**32 - 1], default=0
        Seed of the split, the rendering and the training (numpy and torch).
    val_rho : float or None, default=None
        Fraction of the validation images whose colour agrees with their class:
        held-out data drawn like the training data (``0.95`` for CelebA-like
        settings, where no balanced held-out set exists). ``None`` balances the
        colours within every class, as in the test split. Only the colours
        (and stripes) of the validation split change: its digits, the other
        splits and the network are the same whatever ``val_rho``.
    stripes : float or None, default=None
        A second shortcut: the background's texture (plain, or horizontal
        stripes of period ``k + 1`` for texture ``k``; ``n_classes`` textures)
        agrees with the class for a fraction ``stripes`` of every class in
        training, independently of the colour, and ``stripes_*`` holds it.
        Validation (unless ``val_rho``) and test splits have every
        (class, colour, texture) group equally frequent. ``None``: plain
        backgrounds.
    train : bool, default=False
        Train the CNN here even when shipped weights match the arguments.
    data_home : str or path-like, default=None
        Where to cache; see :func:`sklearn.datasets.get_data_home`.
    refresh : bool, default=False
        Rebuild (and, without shipped weights, retrain) even if a cached result
        exists.
    verbose : bool, default=False
        Show a progress bar of the training (tqdm, with the loss of every
        epoch) and say where the result comes from.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With, for every split ``s`` in ``train``, ``val``, ``test``:

        - ``X_s`` : ndarray of shape (n, 64), float32: penultimate embeddings.
        - ``y_s`` : ndarray of shape (n,), int64: class.
        - ``spurious_s`` : ndarray of shape (n,), int64: background colour.
        - ``stripes_s`` : ndarray of shape (n,), int64: the texture, only with
          ``stripes``. ``np.c_[spurious_s, stripes_s]`` is a two-column
          attribute: :func:`~sklearn_spur.metrics.group_report` then reports
          every (class, colour, texture) group.
        - ``images_s`` : ndarray of shape (n, 3, 16, 16), float32: the inputs of
          ``model``.
        - ``digit_index_s`` : ndarray of shape (n,), int64: index of the
          image's original digit in ``load_digits()``.

        and ``model`` (the trained :class:`WaterDigitsCNN`, in eval mode, on
        CPU), ``head`` (``model.fc``), ``head_name`` (``"fc"``), ``classes``
        (``arange(n_classes)``), ``palette`` (RGB of every colour, shape
        (n_classes, 3)), ``weights`` (``"shipped"`` or ``"trained"``) and
        ``DESCR`` (the construction, split sizes and the ERM model's mean and
        worst-group accuracy per split).

    See Also
    --------
    make_spurious_gaussians : The synthetic recipe, without a network.

    Notes
    -----
    The recipe (image rendering, architecture, 12 epochs of Adam with a cosine
    schedule) is fixed and tuned so that ERM collapses while still learning
    the digits. Test split, mean / worst-group accuracy of the shipped
    networks: two classes, ``random_state`` 0 to 4: 0.67 / 0.28, 0.75 / 0.44,
    0.71 / 0.34, 0.71 / 0.42, 0.68 / 0.26; three classes, 0: 0.64 / 0.27. A
    logistic regression refit on the balanced validation embeddings reaches
    a worst-group accuracy of about 0.8 (two classes): the embeddings carry
    the digits. With more classes, at ``rho=0.95`` the colour explains so
    much of the training labels that the CNN learns little of the digits
    (five classes: 0.22 / 0.00); ``rho=0.8`` gives 0.82 / 0.56 there.

    Two shortcuts (``stripes=0.8``, two classes, ``random_state`` 0, 1, 2):
    ERM's test accuracy is 0.70, 0.62, 0.63 and it leans on both. DFR fitted
    on the validation split with the colour alone reaches a worst
    (class, colour) group accuracy of 0.80, 0.71, 0.74 but a worst
    (class, colour, texture) group accuracy of 0.76, 0.63, 0.63: removing
    the annotated shortcut leaves the other in place.

    Training runs on one CPU thread with deterministic algorithms (the
    caller's settings and torch random state are restored), so that on a
    given machine the result does not depend on the core count.

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
    >>> data.X_train.shape, data.images_train.shape, data.weights
    ((3592, 64), (3592, 3, 16, 16), 'shipped')
    >>> data.X_test.shape, data.head_name
    ((1800, 64), 'fc')
    >>> pred = data.head(torch.from_numpy(data.X_test)).argmax(1).numpy()
    >>> wga = worst_group_accuracy(data.y_test, pred, spurious=data.spurious_test)
    >>> bool((pred == data.y_test).mean() - wga > 0.3)
    True

    Held-out data as correlated as the training data:

    >>> corr = make_waterdigits(random_state=0, val_rho=0.95)
    >>> round(float((corr.y_val == corr.spurious_val).mean()), 2)
    0.95
    """
    params = {"n_classes": int(n_classes), "rho": float(rho),
              "random_state": int(random_state),
              "val_rho": None if val_rho is None else float(val_rho),
              "stripes": None if stripes is None else float(stripes),
              "train": bool(train)}
    if not train:
        params["shipped"] = shipped_file_digest(n_classes, rho, random_state, stripes)
    folder, npz_path, pt_path = _cache_paths(data_home, params)
    arrays = model = None
    if not refresh and npz_path.exists() and pt_path.exists():
        try:
            arrays, model = _load(npz_path, pt_path, n_classes, stripes)
            if verbose:
                print(f"[make_waterdigits] loaded from cache: {npz_path}")
        except Exception:  # an unreadable or incomplete entry is built again
            arrays = model = None
    if arrays is None:
        start = time.perf_counter()
        arrays, model, scores, source = _build(n_classes, rho, random_state, val_rho,
                                               stripes, train, verbose)
        arrays["DESCR"] = np.array(_descr(n_classes, rho, random_state, arrays,
                                          scores, val_rho, stripes, source))
        arrays["weights"] = np.array(source)
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
            how = ("with the shipped weights" if source == "shipped"
                   else "training the CNN here")
            print(f"[make_waterdigits] built {how} in "
                  f"{time.perf_counter() - start:.1f} s, cached in {npz_path}")
    data = Bunch(model=model, head=model.fc, head_name="fc",
                 classes=np.arange(n_classes), palette=arrays.pop("palette"),
                 weights=str(arrays.pop("weights", "trained")),
                 DESCR=str(arrays.pop("DESCR")))
    data.update(arrays)
    return data
