"""Group bookkeeping shared by the metrics and every estimator.

A *group* is a pair (class, spurious attribute value); with several attributes
(``spurious`` of shape ``(n_samples, n_attributes)``) it is the class with the
tuple of attribute values. Everything that needs groups goes through
:func:`check_spurious` and :func:`encode_groups`, so validation and messages are
the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import get_config

from ..exceptions import MissingSpuriousError

__all__ = [
    "Groups",
    "balanced_weights",
    "check_group_sizes",
    "check_labels",
    "check_spurious",
    "encode_groups",
    "group_balanced_indices",
    "host_array",
    "missing_spurious_message",
]


def missing_spurious_message(who: str) -> str:
    """Explain why ``spurious`` did not arrive and how to fix it.

    The two situations need different fixes: with metadata routing off,
    scikit-learn's meta-estimators (``GridSearchCV``, ``cross_validate``,
    ``Pipeline``) never forward ``spurious`` to a scorer; with routing on, the
    caller simply did not pass it (or switched its request off).
    """
    head = f"{who} needs the spurious attribute (`spurious=`), but received none."
    if not get_config().get("enable_metadata_routing", False):
        return (
            f"{head} If you called it directly, pass `spurious=s`. Inside "
            "GridSearchCV, cross_validate or a Pipeline, scikit-learn routes "
            "`spurious` only when metadata routing is on: call "
            "`sklearn.set_config(enable_metadata_routing=True)` once, then "
            "`search.fit(X, y, spurious=s)`. (Never pass it as `groups=`: "
            "GroupKFold would split by it.)"
        )
    return (
        f"{head} Metadata routing is on, so pass it to the outermost fit, e.g. "
        "`search.fit(X, y, spurious=s)`. It is requested by default; if you called "
        "`set_fit_request(spurious=False)` or `set_score_request(spurious=False)`, "
        "set it back to True."
    )


def host_array(a):
    """A torch tensor (CPU or GPU) as a numpy array; anything else unchanged.

    The one place where tensors leave torch: float32 stays float32; dtypes numpy
    lacks (bfloat16) become float32.
    """
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        try:
            return a.numpy()
        except TypeError:
            return a.float().numpy()
    return a


def check_labels(labels, name):
    """Raise a clear error for labels that mix types (strings and numbers)."""
    try:
        np.unique(labels)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in np.asarray(labels, dtype=object).ravel()[:1000]})
        raise ValueError(
            f"`{name}` mixes label types ({', '.join(kinds)}); use one type, e.g. all "
            "strings or all integers."
        ) from None


def check_spurious(spurious, n_samples: int, *, who: str = "This estimator",
                   required: bool = True, name: str = "spurious"):
    """Validate the spurious attribute against ``n_samples``.

    Parameters
    ----------
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), or None
        One discrete value per sample (or one per sample and attribute).
    n_samples : int
        Expected number of rows.
    who : str
        Name used in error messages.
    required : bool
        Whether ``None`` is an error.
    name : str
        Argument name used in error messages.

    Returns
    -------
    spurious : ndarray of shape (n_samples,) or (n_samples, n_attributes), or None
        A 2-D input with a single column is flattened.
    """
    if spurious is None:
        if required:
            raise MissingSpuriousError(missing_spurious_message(who))
        return None
    if hasattr(spurious, "detach"):  # torch tensor
        spurious = host_array(spurious)
    s = np.asarray(spurious)
    if s.dtype.kind == "c":
        raise ValueError(f"`{name}` must hold discrete labels, got complex values.")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim not in (1, 2) or (s.ndim == 2 and s.shape[1] == 0):
        raise ValueError(
            f"`{name}` must be 1-D (one attribute) or 2-D (n_samples, n_attributes); "
            f"got shape {s.shape}."
        )
    if s.shape[0] != n_samples:
        raise ValueError(
            f"`{name}` has {s.shape[0]} rows but there are {n_samples} samples (the "
            "rows of X and y); pass one attribute value per sample."
        )
    if s.dtype.kind == "f" and not np.all(np.isfinite(s)):
        raise ValueError(f"`{name}` contains NaN or infinity.")
    columns = [s] if s.ndim == 1 else [s[:, j] for j in range(s.shape[1])]
    for col in columns:
        check_labels(col, name)
    return s


def _encode_attributes(s):
    """Integer code per row of ``s`` (1-D or 2-D) and the value for each code."""
    if s.ndim == 1:
        values, codes = np.unique(s, return_inverse=True)
        return codes.ravel(), list(values.tolist())
    col_codes, col_values = [], []
    for j in range(s.shape[1]):
        v, c = np.unique(s[:, j], return_inverse=True)
        col_codes.append(c.ravel())
        col_values.append(v.tolist())
    stacked = np.stack(col_codes, axis=1)
    rows, codes = np.unique(stacked, axis=0, return_inverse=True)
    values = [tuple(col_values[j][r[j]] for j in range(len(r))) for r in rows]
    return codes.ravel(), values


@dataclass(frozen=True)
class Groups:
    """Integer group code of every sample and what each code means.

    Attributes
    ----------
    codes : ndarray of shape (n_samples,)
        ``class_index * n_values + value_index``.
    classes : list
        Sorted class labels.
    values : list
        Sorted attribute values (tuples for several attributes).
    counts : ndarray of shape (n_classes * n_values,)
        Samples per group, zeros included: every class is crossed with every value.
    """

    codes: np.ndarray
    classes: list
    values: list
    counts: np.ndarray

    @property
    def n_groups(self) -> int:
        return len(self.classes) * len(self.values)

    def label(self, code: int):
        """The (class, value) pair of a group code."""
        return (self.classes[code // len(self.values)], self.values[code % len(self.values)])

    @property
    def labels(self) -> list:
        return [self.label(g) for g in range(self.n_groups)]


def encode_groups(y, spurious) -> Groups:
    """Cross classes with attribute values; absent combinations are kept (count 0)."""
    y = np.asarray(y)
    classes, y_codes = np.unique(y, return_inverse=True)
    s_codes, values = _encode_attributes(np.asarray(spurious))
    codes = y_codes.ravel() * len(values) + s_codes
    counts = np.bincount(codes, minlength=len(classes) * len(values))
    return Groups(codes=codes, classes=list(classes.tolist()), values=values, counts=counts)


def group_balanced_indices(codes, rng, *, size=None, n_draws=None):
    """Row indices of group-balanced subsamples (every present group downsampled).

    Parameters
    ----------
    codes : ndarray of shape (n_samples,)
        Integer group code per sample.
    rng : numpy.random.Generator
        Source of randomness.
    size : int, default=None
        Samples per group; the smallest present group's size by default.
    n_draws : int, default=None
        Number of subsamples; ``None`` returns one 1-D index array, an int returns
        an array of shape ``(n_draws, n_present_groups * size)``.

    Returns
    -------
    indices : ndarray
        Sorted within each draw, so subsets of a memory-mapped array read in order.
    """
    present = [np.flatnonzero(codes == g) for g in np.unique(codes)]
    if size is None:
        size = min(len(p) for p in present)
    draws = []
    for _ in range(1 if n_draws is None else n_draws):
        idx = np.concatenate([rng.choice(p, size=size, replace=False) for p in present])
        idx.sort()
        draws.append(idx)
    return draws[0] if n_draws is None else np.stack(draws)


def balanced_weights(codes):
    """Per-sample weights that give every code (class or group) the same total.

    The weights sum to ``len(codes)``, like scikit-learn's ``class_weight="balanced"``.
    """
    codes = np.asarray(codes)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return len(codes) / (len(counts) * counts[inverse.ravel()])


def check_group_sizes(groups, minimum, who):
    """Raise if a present group has fewer than ``minimum`` samples."""
    small = [(groups.label(g), int(n)) for g, n in enumerate(groups.counts) if 0 < n < minimum]
    if small:
        raise ValueError(
            f"{who}: every group (class, spurious) needs at least {minimum} samples; "
            f"these have fewer: {small[:10]}."
        )
