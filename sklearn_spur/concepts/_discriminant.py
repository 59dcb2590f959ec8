"""Pseudo-groups by EM of a Gaussian mixture with one shared covariance.

Within every class the components start as the head's predicted classes (for
two classes: its mistakes against its successes) and are refined by EM: the
(posterior-weighted) means of the (class, component) cells and one pooled
within-cell covariance shrunk toward a multiple of the identity give linear
discriminants (``x P - m P / 2 + log prior``), whose softmax over the
components of a sample's own class is its new posterior, until no posterior
moves by more than ``tol``; each sample's pseudo-group is its most probable
component. (Hard, classification EM shrinks the smaller component on one
balanced Gaussian seed of three; soft EM does not.) The pooled
covariance is what makes it work on network embeddings: the attribute that
the head's mistakes only roughly point at (hard majority samples are mistakes
too) is, after whitening, the direction that separates them best, and the
assignments move to it. Everything is computed in float64, blockwise over rows
(memory stays at one block), with one pass over ``X`` per iteration.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = ["Discriminant", "auto_method", "error_directions", "fit_discriminant",
           "predict_components", "selection_strata"]

#: "auto": "discriminant", unless a class has fewer mistakes than
#: AUTO_MIN_ERRORS (nothing to start from): then "cluster".
AUTO_MIN_ERRORS = 10
#: Most EM iterations of "discriminant" (it converges in 4 to 31 on the data
#: of the user guide).
DISCRIMINANT_MAX_ITER = 100

#: Rows of one float64 block: about 64 MiB whatever the width.
_BLOCK_BYTES = 2**26


class Discriminant(NamedTuple):
    """Linear discriminants of the (class, component) cells.

    ``coef`` (n_classes * n_components, n_features) and ``intercept`` (same
    rows; ``-inf`` for a dropped cell), ``center`` (n_features,) subtracted
    first, and ``order`` (n_classes, n_components): the pseudo value of each
    component (0: where the head is most confident).
    """

    coef: np.ndarray
    intercept: np.ndarray
    center: np.ndarray
    order: np.ndarray


def _blocks(X, center):
    """(rows, float64 block of X - center) pairs covering X."""
    step = max(1, _BLOCK_BYTES // (8 * max(X.shape[1], 1)))
    for start in range(0, X.shape[0], step):  # blocks, not samples
        rows = slice(start, start + step)
        yield rows, X[rows].astype(np.float64) - center


def _assign(model, X, y_idx, n_components, sums=None):
    """Posterior of every sample over its class's components: (n_samples, J).

    With ``sums`` (cells x features), adds every sample, weighted by its
    posterior, to the sums of its class's cells.
    """
    post = np.empty((X.shape[0], n_components))
    cols = np.arange(n_components)
    for rows, B in _blocks(X, model.center):
        scores = B @ model.coef.T + model.intercept  # (block, cells)
        own = y_idx[rows, None] * n_components + cols  # the sample's class's cells
        g = np.take_along_axis(scores, own, axis=1)
        g = np.exp(g - g.max(axis=1, keepdims=True))
        g /= g.sum(axis=1, keepdims=True)
        post[rows] = g
        if sums is not None:
            weights = np.zeros((B.shape[0], sums.shape[0]))
            np.put_along_axis(weights, own, g, axis=1)
            sums += weights.T @ B
    return post


def _model(sums, counts, gram, n, y_idx_counts, n_components, shrinkage, center,
           min_size):
    """The discriminants of cells with ``counts`` and ``sums`` (centred data)."""
    d = gram.shape[0]
    means = sums / np.maximum(counts, 1)[:, None]
    within = (gram - (means * counts[:, None]).T @ means) / n  # pooled, within cells
    ridge = np.trace(within) / d if d else 0.0
    cov = (1.0 - shrinkage) * within
    cov[np.diag_indices(d)] += shrinkage * ridge if ridge > 0 else 1.0
    try:
        P = scipy.linalg.solve(cov, means.T, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        P = np.linalg.pinv(cov) @ means.T
    biggest = counts.reshape(-1, n_components).max(axis=1)
    alive = (counts >= min_size) | (counts == np.repeat(biggest, n_components))
    with np.errstate(divide="ignore"):
        prior = np.log(counts / np.repeat(y_idx_counts, n_components))
    intercept = np.where(alive, -0.5 * np.einsum("kd,dk->k", means, P) + prior, -np.inf)
    order = np.zeros((len(y_idx_counts), n_components), np.intp)
    return Discriminant(P.T, intercept, center, order)


def fit_discriminant(X, y_idx, init, proba_true, n_classes, *, shrinkage=0.1,
                     max_iter=100, min_size=2, tol=1e-4):
    """Refine the initial components of every class by (soft) EM.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embeddings (any float dtype; computed in float64).
    y_idx : ndarray of shape (n_samples,) of int
        Class index of every sample.
    init : ndarray of shape (n_samples,) of int
        Initial component of every sample, in ``range(n_components)`` (the
        head's predicted class index).
    proba_true : ndarray of shape (n_samples,)
        The head's probability of the true class: orders the components.
    n_classes : int
    shrinkage : float in (0, 1], default=0.1
        Weight of the identity (scaled to the mean variance) in the pooled
        covariance.
    max_iter : int, default=100
        Most EM iterations (each one pass over ``X``).
    min_size : int, default=2
        A cell with fewer samples (in posterior mass) is dropped, unless it is
        its class's largest.
    tol : float, default=1e-4
        Stop when no posterior moves by more than this.

    Returns
    -------
    labels : ndarray of shape (n_samples,) of int
        Pseudo value of every sample (0: the component of its class where the
        head is most confident).
    model : Discriminant
    n_iter : int
        Iterations run (``max_iter`` when the posteriors still moved).
    """
    n, d = X.shape
    J = int(init.max()) + 1 if n else 1
    cells = n_classes * J
    class_counts = np.bincount(y_idx, minlength=n_classes)
    center = X.astype(np.float64).mean(axis=0) if n else np.zeros(d)
    gram = np.zeros((d, d))
    sums = np.zeros((cells, d))
    labels = np.asarray(init, np.intp)
    cell = y_idx * J + labels
    for rows, B in _blocks(X, center):
        gram += B.T @ B
        onehot = np.zeros((B.shape[0], cells))
        onehot[np.arange(B.shape[0]), cell[rows]] = 1.0
        sums += onehot.T @ B
    post = np.zeros((n, J))
    post[np.arange(n), labels] = 1.0
    counts = np.bincount(cell, minlength=cells).astype(np.float64)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # EM iterations, not samples
        model = _model(sums, counts, gram, n, class_counts, J, shrinkage, center,
                       min_size)
        sums = np.zeros((cells, d))
        new = _assign(model, X, y_idx, J, sums=sums)
        counts = np.stack([np.bincount(y_idx, weights=new[:, j], minlength=n_classes)
                           for j in range(J)], axis=1).ravel()  # components
        moved = np.abs(new - post).max() if n else 0.0
        post = new
        if moved < tol:
            break
    labels = post.argmax(axis=1)
    hard = np.bincount(y_idx * J + labels, minlength=cells)
    conf = np.bincount(y_idx * J + labels, weights=proba_true, minlength=cells)
    conf = np.where(hard > 0, conf / np.maximum(hard, 1), -np.inf).reshape(-1, J)
    order = np.argsort(np.argsort(-conf, axis=1, kind="stable"), axis=1, kind="stable")
    model = model._replace(order=order)
    return order[y_idx, labels], model, n_iter


def predict_components(model, X, y_idx):
    """Pseudo value of every sample of ``(X, y_idx)`` under a fitted model."""
    J = model.order.shape[1]
    return model.order[y_idx, _assign(model, X, y_idx, J).argmax(axis=1)]


def error_directions(X, y_idx, wrong, n_classes):
    """Each class's ``mean(X | wrong) - mean(X | right)`` and midpoint threshold.

    Returns ``(directions, thresholds)`` of shapes (n_classes, n_features) and
    (n_classes,) in ``X``'s dtype; zero for a class without mistakes or
    without successes (``infer_groups(method="direction")``).
    """
    directions = np.zeros((n_classes, X.shape[1]), X.dtype)
    thresholds = np.zeros(n_classes, X.dtype)
    for c in range(n_classes):  # classes, not samples
        rows = y_idx == c
        bad, good = rows & wrong, rows & ~wrong
        if bad.any() and good.any():
            mu_bad, mu_good = X[bad].mean(axis=0), X[good].mean(axis=0)
            directions[c] = mu_bad - mu_good
            thresholds[c] = (mu_bad + mu_good) @ directions[c] / 2
    return directions, thresholds


def auto_method(y_idx, wrong, n_classes):
    """What ``method="auto"`` means on this data: ``"discriminant"`` when every
    class has at least ``AUTO_MIN_ERRORS`` mistakes of the head, else ``"cluster"``."""
    mistakes = np.bincount(y_idx[wrong], minlength=n_classes)
    return "discriminant" if mistakes.min() >= AUTO_MIN_ERRORS else "cluster"


def selection_strata(X, y, y_idx, head, evidence, random_state):
    """The label-free pseudo-groups of a fit context: ``(pseudo, codes)``.

    ``pseudo`` is what :func:`infer_groups` (``"auto"``) gives on the whole
    fitting data, from the context's shared ``evidence`` of the head;
    ``codes`` are its (class, pseudo value) pairs, compact from 0.
    """
    n_classes = len(head.classes)
    if auto_method(y_idx, evidence.wrong, n_classes) == "discriminant":
        pseudo = fit_discriminant(X, y_idx, evidence.pred, evidence.proba_true,
                                  n_classes, max_iter=DISCRIMINANT_MAX_ITER)[0]
    else:
        from .inference import infer_groups  # the mixtures' fallback

        pseudo = infer_groups(X, y, head=head, method="cluster",
                              random_state=random_state)
    codes = y_idx * (pseudo.max() + 1) + pseudo
    return pseudo, np.unique(codes, return_inverse=True)[1].ravel()
