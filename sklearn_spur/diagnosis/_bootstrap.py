"""Bootstrap intervals of per-group, worst-group and mean accuracy.

Resampling the samples of every group with replacement (the group sizes kept)
makes a group's number of correct predictions binomial with its size and its
accuracy, so the bootstrap is drawn as binomials directly: one
``(n_boot, n_groups)`` draw per model, no loop over samples or resamples.
Keeping the group sizes keeps every group present in every resample, so the
worst group's accuracy is always defined.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_report", "interval"]

LEVEL = 0.95


def interval(draws):
    """The percentile interval of the bootstrap ``draws`` (along axis 0)."""
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0)
    return lo, hi


def bootstrap_report(report, n_boot, seed):
    """Intervals of a :class:`~sklearn_spur.metrics.GroupReport`'s accuracies.

    Parameters
    ----------
    report : GroupReport
        Counts and accuracies per group (empty groups are left out).
    n_boot : int
        Number of bootstrap resamples.
    seed : int
        Seed of the draws: the same seed gives the same intervals.

    Returns
    -------
    intervals : dict
        ``groups``: array of shape (n_groups, 2) (NaN rows for empty groups),
        ``worst_group_accuracy`` and ``mean_accuracy``: ``(low, high)``.
    """
    counts = np.asarray(report.counts, dtype=np.int64)
    acc = np.nan_to_num(np.asarray(report.accuracies, dtype=np.float64))
    present = counts > 0
    rng = np.random.default_rng(seed)
    hits = rng.binomial(counts[present], acc[present], size=(n_boot, present.sum()))
    group_acc = hits / counts[present]
    groups = np.full((len(counts), 2), np.nan)
    groups[present] = np.column_stack(interval(group_acc))
    worst = interval(group_acc.min(axis=1))
    mean = interval(hits.sum(axis=1) / counts.sum())
    return {"groups": groups,
            "worst_group_accuracy": (float(worst[0]), float(worst[1])),
            "mean_accuracy": (float(mean[0]), float(mean[1]))}
