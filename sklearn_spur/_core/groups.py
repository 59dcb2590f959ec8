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
from .labels import as_labels

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
    "reject_unexpected_fit_params",
    "unexpected_params_message",
]

#: A spurious attribute with more distinct values than
#: ``max(MAX_VALUES_FLOOR, n_samples // 2)`` (per column) is refused as continuous.
MAX_VALUES_FLOOR = 20
_DISCRETE_HINT = (
    "The spurious attribute must be discrete (a few values, each shared by many "
    "samples); bin a continuous one first, e.g. `np.digitize(a, np.quantile(a, "
    "[0.5]))`."
)


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
        head = np.asarray(labels, dtype=object).ravel()[:1000]
        kinds = sorted({type(v).__name__ for v in head})
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

    Notes
    -----
    Each column must be a discrete attribute: no missing values (NaN, None,
    ``pandas.NA``), one label type, floats only when whole (0.0, 1.0, ...), and at
    most ``max(20, n_samples // 2)`` distinct values. A continuous column (e.g.
    ``rng.normal(size=n)``) would otherwise become hundreds of one-sample groups.
    """
    if spurious is None:
        if required:
            raise MissingSpuriousError(missing_spurious_message(who))
        return None
    if hasattr(spurious, "detach"):  # torch tensor
        spurious = host_array(spurious)
    s = np.asarray(spurious)
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
    columns = [s] if s.ndim == 1 else [s[:, j] for j in range(s.shape[1])]
    for j, col in enumerate(columns):
        label = name if s.ndim == 1 else f"{name}[:, {j}]"
        _, values, _ = as_labels(col, label, hint=_DISCRETE_HINT)
        if values.size > max(MAX_VALUES_FLOOR, n_samples // 2):
            raise ValueError(
                f"`{label}` has {values.size} distinct values for {n_samples} samples "
                f"(more than max({MAX_VALUES_FLOOR}, n_samples // 2)): that is not a "
                "grouping, groups would hold about "
                f"{n_samples / values.size:.1f} samples each. {_DISCRETE_HINT}"
            )
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
        n_values = len(self.values)
        return (self.classes[code // n_values], self.values[code % n_values])

    @property
    def labels(self) -> list:
        return [self.label(g) for g in range(self.n_groups)]


def encode_groups(y, spurious, *, all_classes=None) -> Groups:
    """Cross classes with attribute values; absent combinations are kept (count 0).

    ``all_classes`` (e.g. a model's ``classes_``) adds classes absent from ``y``,
    so that their groups are reported as empty instead of disappearing.
    """
    y = np.asarray(y)
    if all_classes is None:
        classes, y_codes = np.unique(y, return_inverse=True)
    else:
        classes = np.union1d(np.unique(y), np.asarray(all_classes).ravel())
        y_codes = np.searchsorted(classes, y)
    s_codes, values = _encode_attributes(np.asarray(spurious))
    codes = y_codes.ravel() * len(values) + s_codes
    counts = np.bincount(codes, minlength=len(classes) * len(values))
    return Groups(codes=codes, classes=list(classes.tolist()), values=values,
                  counts=counts)


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
    small = [(groups.label(g), int(n)) for g, n in enumerate(groups.counts)
             if 0 < n < minimum]
    if small:
        raise ValueError(
            f"{who}: every group (class, spurious) needs at least {minimum} samples; "
            f"these have fewer: {small[:10]}."
        )


# Keywords users pass when they mean `spurious` (other libraries' names for it).
_SPURIOUS_ALIASES = {"groups", "group", "group_labels", "sensitive_features",
                     "sensitive_attribute", "attribute", "attributes", "bias",
                     "spurious_attribute", "spurious_labels", "environment", "env",
                     "domain", "metadata"}


def unexpected_params_message(who: str, params, *, takes: str = "X, y and spurious"):
    """The message for unexpected keyword arguments, with the fix for ``groups=``.

    Parameters
    ----------
    who : str
        The callable as the user sees it, e.g. ``"DFRClassifier.fit"``.
    params : iterable of str
        The unexpected keyword names.
    takes : str, default="X, y and spurious"
        What the callable does take, for the message.

    Returns
    -------
    message : str
    """
    names = sorted(params)
    head = (f"{who}() got unexpected keyword argument(s) "
            f"{', '.join(repr(n) for n in names)}; it takes {takes}.")
    if not _SPURIOUS_ALIASES.intersection(names):
        return head
    alias = min(_SPURIOUS_ALIASES.intersection(names))
    if "spurious" not in takes:
        return (
            f"{head} It needs no group labels: drop `{alias}=`. (Methods that use "
            "the spurious attribute take it as `spurious=`; `groups` is the keyword "
            "of scikit-learn's group splitters such as GroupKFold.)"
        )
    return (
        f"{head} The spurious attribute is passed as `spurious=`, not `{alias}=`. "
        "(`groups` is the keyword of scikit-learn's group splitters such as "
        "GroupKFold and LeaveOneGroupOut, which would split the folds by the "
        "attribute.) Inside GridSearchCV, cross_validate or a Pipeline, `spurious` "
        "travels by metadata routing: call "
        "`sklearn.set_config(enable_metadata_routing=True)` once, then "
        "`search.fit(X, y, spurious=s)`; estimators and the worst-group scorer "
        "request it by default."
    )


def reject_unexpected_fit_params(who: str, params, *,
                                 takes: str = "X, y and spurious") -> None:
    """Raise a TypeError for unexpected ``fit`` keywords, explaining ``spurious``.

    Estimators' ``fit(X, y, *, spurious=None, **unexpected)`` call this so that
    ``fit(X, y, groups=s)`` gets the routed-keyword explanation instead of
    Python's bare ``TypeError``.

    Parameters
    ----------
    who : str
        Estimator name (``"DFRClassifier"``) or the method (``"DFRClassifier.fit"``).
    params : dict or iterable of str
        The unexpected keyword arguments; nothing happens when empty.
    takes : str, default="X, y and spurious"
        What ``fit`` does take; ``"X and y"`` for a method that uses no group
        labels (the message then says to drop ``groups=``).

    Raises
    ------
    TypeError
        When ``params`` is not empty.

    Examples
    --------
    >>> from sklearn_spur._core.groups import reject_unexpected_fit_params
    >>> reject_unexpected_fit_params("DFRClassifier", {})
    >>> reject_unexpected_fit_params("DFRClassifier", {"groups": [0, 1]})
    Traceback (most recent call last):
    ...
    TypeError: DFRClassifier.fit() got unexpected keyword argument(s) 'groups'; ...
    """
    if not params:
        return
    if "." not in who:
        who = f"{who}.fit"
    raise TypeError(unexpected_params_message(who, params, takes=takes))
