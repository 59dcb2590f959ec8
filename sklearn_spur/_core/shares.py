"""Group shares and the adjusted mean accuracy of :func:`~sklearn_spur.group_report`.

The *adjusted* mean accuracy weights each group's accuracy by a given share of
that group, usually its share in the training split: the convention of the DFR,
JTT and SpuCo papers, which makes test accuracy comparable when the test split
is group-balanced but training was not.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from .groups import check_spurious, encode_groups, host_array
from .labels import as_labels, check_same_kind, user_stacklevel

__all__ = ["adjusted_accuracy", "group_shares", "handle_missing"]


def handle_missing(absent, missing, message):
    """Apply the ``missing=`` policy ("warn", "ignore", "raise") to empty groups."""
    if not absent:
        return
    if missing == "raise":
        raise ValueError(message + " (missing='raise').")
    if missing == "warn":
        warnings.warn(message + ". Pass missing='ignore' to silence this.",
                      UserWarning, stacklevel=user_stacklevel())


def group_shares(weights, kind_true: str) -> dict:
    """``{(class, value): share}`` from a mapping or a ``(y, spurious)`` pair."""
    if isinstance(weights, Mapping):
        shares = dict(weights)
        bad = [k for k in shares if not (isinstance(k, tuple) and len(k) == 2)]
        if bad:
            raise ValueError(
                "`weights` keys must be (class, attribute value) pairs like the "
                f"report's `groups`; got {bad[:3]}."
            )
    elif isinstance(weights, (tuple, list)) and len(weights) == 2:
        y_w = np.asarray(host_array(weights[0]))
        if y_w.ndim != 1 or y_w.shape[0] == 0:
            raise ValueError(
                "`weights[0]` (the training labels) must be a non-empty 1-D array; "
                f"got shape {y_w.shape}."
            )
        y_w, _, kind_w = as_labels(y_w, "weights[0]")
        check_same_kind(kind_true, kind_w, "y_true", "weights[0]")
        s_w = check_spurious(weights[1], y_w.shape[0], who="group_report",
                             name="weights[1]")
        g = encode_groups(y_w, s_w)
        shares = {label: n / y_w.shape[0]
                  for label, n in zip(g.labels, g.counts.tolist()) if n}
    else:
        raise TypeError(
            "`weights` must be a mapping {(class, attribute value): share} or a pair "
            "(y_train, spurious_train) to take the training split's group shares "
            f"from; got {type(weights).__name__}."
        )
    try:
        values = np.asarray(list(shares.values()), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("`weights` values must be numbers (group shares).") from None
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            "`weights` values must be finite and non-negative, and not all absent; "
            f"got {values.tolist()[:10]}."
        )
    return dict(zip(shares, values.tolist()))


def adjusted_accuracy(labels, counts, accuracies, shares, missing) -> float:
    """Group accuracies averaged with the given shares, renormalised.

    Groups that have a share but no samples in the evaluated split cannot be
    measured: they are left out, the remaining shares are renormalised, and the
    ``missing=`` policy says so.
    """
    index = {label: g for g, label in enumerate(labels)}
    rows, w, unmeasured = [], [], []
    for key, share in shares.items():
        g = index.get(key)
        if share <= 0:
            continue
        if g is None or counts[g] == 0:
            unmeasured.append(key)
        else:
            rows.append(g)
            w.append(share)
    if not rows:
        raise ValueError(
            "`weights` gives no share to any group with samples here: its groups "
            f"look like {list(shares)[:3]}, the report's like {list(labels)[:3]}. "
            "Use the same labels for classes and attribute values in both."
        )
    handle_missing(unmeasured, missing,
                   f"{len(unmeasured)} weighted group(s) have no samples, the adjusted "
                   f"accuracy is renormalised without them: {unmeasured[:10]}")
    w = np.asarray(w)
    return float(np.dot(w, np.asarray(accuracies)[rows]) / w.sum())
