"""Spuriously correlated Gaussians: the synthetic recipe of Sagawa et al. (2020)."""

from __future__ import annotations

import textwrap
from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_spurious_gaussians"]


def _balanced_cycle(n, n_values, rng):
    """``n`` values of ``range(n_values)``, shuffled, each as often as possible."""
    return rng.permutation(np.arange(n) % n_values)


def _spurious_values(y, n_classes, rho, balanced, rng):
    """Attribute value of every sample, given its class ``y``.

    ``balanced``: values spread evenly within every class (independent of it).
    Otherwise exactly ``round((1 - rho) * n_k)`` samples of class ``k`` get a
    value other than ``k`` (spread evenly over the others), the rest get ``k``.
    """
    a = np.empty_like(y)
    for k in range(n_classes):
        idx = np.flatnonzero(y == k)
        if balanced:
            a[idx] = _balanced_cycle(len(idx), n_classes, rng)
            continue
        n_other = int(round((1.0 - rho) * len(idx)))
        other = rng.permutation(idx)[:n_other]
        a[idx] = k
        a[other] = (k + 1 + _balanced_cycle(n_other, n_classes - 1, rng)) % n_classes
    return a


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "rho": [Interval(Real, 0, 1, closed="both")],
        "balanced": ["boolean"],
        "n_core": [Interval(Integral, 1, None, closed="left")],
        "n_spurious": [Interval(Integral, 1, None, closed="left")],
        "n_noise": [Interval(Integral, 0, None, closed="left")],
        "core_strength": [Interval(Real, 0, None, closed="left")],
        "spurious_strength": [Interval(Real, 0, None, closed="left")],
        "noise_correlation": [Interval(Real, 0, 1, closed="left")],
        "n_val": [Interval(Integral, 0, None, closed="left")],
        "val_rho": [Interval(Real, 0, 1, closed="both"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_spurious_gaussians(n_samples=1000, *, n_classes=2, rho=0.9, balanced=False,
                            n_core=5, n_spurious=5, n_noise=10, core_strength=2.0,
                            spurious_strength=6.0, noise_correlation=0.0,
                            n_val=0, val_rho=None, random_state=None):
    """Gaussian features with a weak core signal and a strong spurious one.

    The synthetic setting of Sagawa et al. (2020) [1]_: every sample has a
    class ``y`` and a spurious attribute ``a`` (both in ``range(n_classes)``)
    that agree for a fraction ``rho`` of every class. Its features are, in
    this order:

    - ``n_core`` core features whose mean depends on ``y`` only, weakly
      (``core_strength``): they predict ``y`` everywhere, but noisily;
    - ``n_spurious`` spurious features whose mean depends on ``a`` only,
      strongly (``spurious_strength``): the easy signal, predictive of ``y``
      only as long as ``a`` agrees with it;
    - ``n_noise`` pure noise features.

    Value ``k`` of ``y`` (of ``a``) puts the mean of the core (spurious) block
    at ``strength * (k - (n_classes - 1) / 2)`` along :attr:`core_direction`
    (:attr:`spurious_direction`), the all-ones vector of that block, normalised;
    so ``strength`` is the distance between adjacent classes (attribute values)
    in units of the noise's standard deviation. The noise is standard normal,
    except that with ``noise_correlation=c`` the noise of the spurious and
    noise features shares a common factor: every pair of them has correlation
    ``c`` (the variance of each stays 1). The mean difference between
    attribute values is still exactly along ``spurious_direction``, while a
    classifier's weight vector (an SVM's, a logistic regression's) tilts away
    from it to cancel the shared noise.

    The directions and the noise law depend on the parameters only, never on
    ``random_state``: calls with different seeds draw from the same
    distribution, e.g. a training split and balanced validation and test
    splits (see the example).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples. Classes get ``n_samples // n_classes`` samples each
        (the remainder going to the first classes).
    n_classes : int, default=2
        Number of classes, and of attribute values.
    rho : float, default=0.9
        Fraction of every class whose attribute equals its class; the others get
        one of the other values, spread evenly. ``1 / n_classes`` makes ``a``
        independent of ``y``. Ignored when ``balanced=True``.
    balanced : bool, default=False
        Draw ``a`` independently of ``y``, with every group ``(y, a)`` equally
        frequent (up to one sample): the usual validation and test distribution.
    n_core : int, default=5
        Number of core features.
    n_spurious : int, default=5
        Number of spurious features.
    n_noise : int, default=10
        Number of noise features.
    core_strength : float, default=2.0
        Distance between adjacent class means along ``core_direction``. With two
        classes the core features alone give a Bayes accuracy of
        ``Phi(core_strength / 2)`` (0.84 by default).
    spurious_strength : float, default=6.0
        Distance between adjacent attribute means along ``spurious_direction``
        (``Phi(3) = 0.9987`` accuracy for ``a`` by default).
    noise_correlation : float in [0, 1), default=0.0
        Correlation between the noise of any two spurious or noise features.
    n_val : int, default=0
        Size of a held-out split drawn from the same distribution
        (``X_val``, ``y_val``, ``spurious_val``), after and independently of
        ``X``: ``X``, ``y`` and ``spurious`` do not depend on it.
    val_rho : float in [0, 1] or None, default=None
        Fraction of every class of the held-out split whose attribute equals
        its class: held-out data drawn like the training data. ``None``:
        balanced, every group ``(y, a)`` equally frequent. Needs ``n_val > 0``.
    random_state : int, RandomState instance or None, default=None
        Seed of the sampling.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X`` (ndarray of shape (n_samples, n_core + n_spurious + n_noise)),
        ``y`` and ``spurious`` (int64 ndarrays of shape (n_samples,)),
        ``core_direction`` and ``spurious_direction`` (unit ndarrays of shape
        (n_features,)), ``feature_names`` and ``DESCR``; with ``n_val``, also
        ``X_val``, ``y_val`` and ``spurious_val``.

    See Also
    --------
    make_waterdigits : A real benchmark: images, a CNN and its embeddings.

    References
    ----------
    .. [1] S. Sagawa, A. Raghunathan, P. W. Koh, P. Liang, "An Investigation of
       Why Overparameterization Exacerbates Spurious Correlations", ICML 2020,
       Section 5 (synthetic experiment).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur.datasets import make_spurious_gaussians
    >>> from sklearn_spur.metrics import worst_group_accuracy
    >>> train = make_spurious_gaussians(2000, rho=0.9, random_state=0)
    >>> test = make_spurious_gaussians(2000, balanced=True, random_state=1)
    >>> train.X.shape, float((train.y == train.spurious).mean())
    ((2000, 20), 0.9)
    >>> clf = LogisticRegression().fit(train.X, train.y)
    >>> mean = clf.score(test.X, test.y)
    >>> wga = worst_group_accuracy(test.y, clf.predict(test.X), spurious=test.spurious)
    >>> bool(mean - wga > 0.2)
    True

    A held-out split as correlated as the training data, in the same call:

    >>> data = make_spurious_gaussians(2000, n_val=400, val_rho=0.95, random_state=0)
    >>> data.X_val.shape, float((data.y_val == data.spurious_val).mean())
    ((400, 20), 0.95)
    """
    if val_rho is not None and n_val == 0:
        raise ValueError("val_rho sets the attribute-label agreement of the held-out "
                         "split: pass n_val > 0, its size.")
    rng = check_random_state(random_state)
    n_features = n_core + n_spurious + n_noise
    core = slice(0, n_core)
    spur = slice(n_core, n_core + n_spurious)
    core_direction = np.zeros(n_features)
    core_direction[core] = 1 / np.sqrt(n_core)
    spurious_direction = np.zeros(n_features)
    spurious_direction[spur] = 1 / np.sqrt(n_spurious)
    X, y, a = _draw(n_samples, n_classes, rho, balanced, n_core, noise_correlation,
                    core_strength, spurious_strength, core_direction,
                    spurious_direction, rng)
    if n_val:
        val = _draw(n_val, n_classes, 0.0 if val_rho is None else val_rho,
                    val_rho is None, n_core, noise_correlation, core_strength,
                    spurious_strength, core_direction, spurious_direction, rng)

    feature_names = np.array(
        [f"core{i}" for i in range(n_core)]
        + [f"spurious{i}" for i in range(n_spurious)]
        + [f"noise{i}" for i in range(n_noise)], dtype=object)
    if balanced:
        law = "Balanced: every (class, attribute) group is equally frequent."
    else:
        law = (f"The attribute agrees with the class for a fraction rho = {rho} of "
               "every class.")
    title = "Spuriously correlated Gaussians (Sagawa et al. 2020, synthetic)"
    text = (
        f"{n_samples} samples, {n_classes} classes, {n_features} features: "
        f"{n_core} core (mean along core_direction set by the class, strength "
        f"{core_strength}), {n_spurious} spurious (mean along spurious_direction set "
        f"by the attribute, strength {spurious_strength}) and {n_noise} noise. "
        f"Unit-variance noise; correlation {noise_correlation} between any two "
        f"spurious or noise features. {law} Fraction of samples whose attribute "
        f"equals their class: {(y == a).mean():.3f}."
    )
    descr = f"{title}\n{'=' * len(title)}\n\n{textwrap.fill(text, width=79)}\n"
    if n_val:
        held_out = ("balanced" if val_rho is None else
                    f"attribute equal to the class for a fraction {val_rho} of every "
                    "class")
        descr += f"\nHeld-out split (X_val): {n_val} samples, {held_out}.\n"
    out = Bunch(X=X, y=y, spurious=a, core_direction=core_direction,
                spurious_direction=spurious_direction, feature_names=feature_names,
                DESCR=descr)
    if n_val:
        out.update(X_val=val[0], y_val=val[1], spurious_val=val[2])
    return out


def _draw(n_samples, n_classes, rho, balanced, n_core, noise_correlation,
          core_strength, spurious_strength, core_direction, spurious_direction, rng):
    y = _balanced_cycle(n_samples, n_classes, rng).astype(np.int64)
    a = _spurious_values(y, n_classes, rho, balanced, rng)
    n_features = len(core_direction)
    centre = (n_classes - 1) / 2
    X = rng.standard_normal((n_samples, n_features))
    if noise_correlation > 0:
        shared = rng.standard_normal((n_samples, 1))
        X[:, n_core:] = (np.sqrt(1 - noise_correlation) * X[:, n_core:]
                         + np.sqrt(noise_correlation) * shared)
    X += core_strength * (y - centre)[:, None] * core_direction
    X += spurious_strength * (a - centre)[:, None] * spurious_direction
    return X, y, a
