"""Model selection on held-out halves, shared by every method that tunes itself.

A method that tunes a hyperparameter (DFR's ``C``, AFR's ``gamma``, JTT's
``upweight``, NeuronTune's mask size) fits each candidate on one half of its
data and scores it on the other. The halves are stratified by group when group
labels are given, else by class; the score is the worst accuracy over those
same strata (worst-group or worst-class accuracy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["predict_index", "stratified_halves", "subsample", "worst_stratum_accuracy"]


def stratified_halves(strata, rng):
    """A boolean mask of half the samples of every stratum (the fitting half).

    Parameters
    ----------
    strata : ndarray of shape (n_samples,) of int
        Group or class code of every sample.
    rng : numpy.random.Generator or RandomState
        Source of randomness: one permutation per stratum, in code order.

    Returns
    -------
    half : ndarray of shape (n_samples,) of bool
        ``True`` for the second part of each stratum's permutation (the larger
        part of an odd stratum), so every stratum of two or more samples is in
        both halves.
    """
    half = np.zeros(len(strata), bool)
    for code in np.unique(strata):  # strata, not samples
        members = rng.permutation(np.flatnonzero(strata == code))
        half[members[len(members) // 2:]] = True
    return half


def predict_index(X, coef, intercept):
    """Class index predicted by heads ``coef`` (B, K, d), ``intercept`` (B, K).

    Returns an array of shape (n_samples, B); ``K == 1`` is the binary logit.
    """
    scores = np.einsum("nd,bkd->nbk", X, coef, optimize=True) + intercept[None]
    if scores.shape[2] == 1:
        return (scores[..., 0] > 0).astype(np.intp)
    return scores.argmax(axis=2)


def worst_stratum_accuracy(pred, y_idx, strata):
    """Worst accuracy over the strata present, for each column of ``pred``.

    Parameters
    ----------
    pred : ndarray of shape (n_samples, B)
        Predicted class indices of B candidates.
    y_idx : ndarray of shape (n_samples,)
        True class indices.
    strata : ndarray of shape (n_samples,) of int
        Group (or class) code of every sample.

    Returns
    -------
    scores : ndarray of shape (B,)
    """
    correct = (pred == y_idx[:, None]).astype(np.float64)
    present, inverse = np.unique(strata, return_inverse=True)
    sums = np.zeros((len(present), correct.shape[1]))
    np.add.at(sums, inverse.ravel(), correct)
    counts = np.bincount(inverse.ravel(), minlength=len(present))[:, None]
    return (sums / counts).min(axis=0)


def subsample(strata, size, rng):
    """Sorted rows of a stratified random subsample of at most ``size`` (all if None).

    Every stratum keeps its share (at least one sample).
    """
    n = len(strata)
    if size is None or n <= size:
        return np.arange(n)
    keep = np.zeros(n, bool)
    for code in np.unique(strata):  # strata, not samples
        members = np.flatnonzero(strata == code)
        take = min(members.size, max(1, int(round(size * members.size / n))))
        keep[rng.choice(members, size=take, replace=False)] = True
    return np.flatnonzero(keep)
