"""Direction estimators of a concept in embedding space.

The pieces :class:`~sklearn_spur.SpuriousProbe` is assembled from, as plain
functions of arrays:

- concept labels: from the spurious attribute (:func:`concept_labels`) or from
  the head's mistakes (:func:`mistake_labels`, the annotation-free mode);
- the (concept, class) cells in which a direction can be estimated
  (:func:`concept_cells`);
- one direction per cell (:func:`cell_directions`): the pattern ``mean(z | t=1)
  - mean(z | t=0)``, or the weights of a t-balanced linear classifier (svm,
  logistic, ridge, lasso) with its C chosen by cross-validated ROC AUC;
- pooling of the per-class directions (:func:`pool_directions`), sign-aligned
  for the mistakes;
- the orthonormal basis of their span (:func:`orthonormalize`) and the
  reference projections (:func:`reference_candidates`).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state

from .._core.evidence import head_evidence
from .._core.groups import balanced_weights
from .._core.solver import fit_logistic, standardize_stats
from .diagnostics import auc

PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
DIRECTIONS = ("pattern", "svm", "logistic", "ridge", "lasso")
# An attribute column with more distinct values than this gets no one-vs-rest
# directions: it is continuous or an identifier, not a concept (pass `concept=`).
MAX_VALUES = 32
# A direction whose residual after projecting out the previous ones is below
# this (the directions are unit vectors) adds no new dimension: it is dropped.
_RANK_TOL = 1e-3


def class_codes(y, n, within_class):
    """Class index of every sample and the classes (one pseudo-class without y)."""
    if y is None or not within_class:
        return np.zeros(n, dtype=np.intp), np.array([None], dtype=object)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.ravel(), classes


def orthonormalize(D):
    """Gram-Schmidt on the rows of ``D`` (float64), dropping dependent rows.

    The first row is kept exactly (up to normalisation), so a single concept's
    direction is its own basis.
    """
    basis = []
    for row in D:
        v = row.astype(np.float64, copy=True)
        for _ in range(2):  # re-orthogonalise once, for float32-sized errors
            for b in basis:
                v -= (b @ v) * b
        norm = np.linalg.norm(v)
        if norm > _RANK_TOL * max(np.linalg.norm(row), np.finfo(float).tiny):
            basis.append(v / norm)
    return np.array(basis).reshape(-1, D.shape[1])


def normalize(D):
    """Rows of ``D`` scaled to unit norm; a zero or non-finite row is an error."""
    if not np.all(np.isfinite(D)):
        raise ValueError(
            "SpuriousProbe: a concept direction is not finite: the embeddings are "
            "too large for their dtype (their sums over the samples overflow). "
            "Rescale X, or pass it as float64."
        )
    norms = np.linalg.norm(D, axis=1)
    if np.any(norms == 0):
        raise ValueError(
            "SpuriousProbe: a concept direction is zero (the concept leaves the "
            "embeddings unchanged on average, or every coefficient of its model "
            "was shrunk to zero); try another `direction` or larger `Cs`."
        )
    return D / norms[:, None]


def mode(values):
    """The most frequent value (the smallest among ties), as a float."""
    vals, counts = np.unique(values, return_counts=True)
    return float(vals[np.argmax(counts)])


def concept_labels(s, concept):
    """Boolean concept labels ``T`` (n, n_concepts) and their names."""
    if s.ndim == 2 and concept is not None:
        raise ValueError(
            "SpuriousProbe: `concept` selects a value of a single attribute; with "
            f"{s.shape[1]} attribute columns leave it None."
        )
    columns = [s] if s.ndim == 1 else [s[:, j] for j in range(s.shape[1])]
    labels, names = [], []
    for j, col in enumerate(columns):
        values = np.unique(col)
        where = "" if s.ndim == 1 else f" (column {j})"
        if concept is not None and not np.any(values == concept):
            raise ValueError(
                f"SpuriousProbe: concept={concept!r} is not a value of the "
                f"spurious attribute (values: {values.tolist()[:10]})."
            )
        if concept is None and len(values) > MAX_VALUES:
            raise ValueError(
                f"SpuriousProbe: the spurious attribute{where} has {len(values)} "
                f"distinct values; a probe makes one direction per value (at most "
                f"{MAX_VALUES}), so it looks continuous or like an identifier. Bin it "
                "into a few groups (e.g. np.digitize), or pick one value with "
                "`concept=`."
            )
        if len(values) < 2:
            warnings.warn(
                f"SpuriousProbe: the spurious attribute{where} has a single value "
                f"({values[0]!r}) in these data: there is no concept to separate, "
                "so it gives no direction.",
                UserWarning,
                stacklevel=4,
            )
            continue
        if concept is not None:
            chosen = [concept]
        else:
            chosen = values[1:] if len(values) == 2 else values
        for v in chosen:
            labels.append(col == v)
            v = v.item() if hasattr(v, "item") else v
            names.append(v if s.ndim == 1 else (j, v))
    if not labels:
        return np.zeros((s.shape[0], 0), bool), names
    return np.stack(labels, axis=1), names


def mistake_labels(head, X, y):
    """The annotation-free concept: ``T[:, 0]`` is "the head gets it wrong".

    ``head`` is resolved and checked against ``y``; its mistakes come from the
    shared :func:`~sklearn_spur._core.evidence.head_evidence`.
    """
    return head_evidence(head, X, head.class_index(y)).wrong[:, None]


def concept_cells(T, codes, n_classes, names, *, annotation_free):
    """The (concept, class) pairs in which both labels occur.

    A concept constant within every class is estimated across classes
    (class ``None``), with a warning: it is confounded with the class.
    """
    n_pos = np.zeros((T.shape[1], n_classes))
    for j in range(T.shape[1]):
        n_pos[j] = np.bincount(codes, weights=T[:, j], minlength=n_classes)
    n_all = np.bincount(codes, minlength=n_classes)
    cells, confounded = [], []
    for j in range(T.shape[1]):
        mixed = np.flatnonzero((n_pos[j] > 0) & (n_pos[j] < n_all))
        if mixed.size:
            cells += [(j, int(c)) for c in mixed]
        elif not annotation_free:
            confounded.append(names[j])
            cells.append((j, None))
    if confounded:
        warnings.warn(
            f"SpuriousProbe: the concept(s) {confounded[:5]} are constant within "
            "every class (the attribute is confounded with the class in these "
            "data), so they were estimated across classes and their direction "
            "also carries the class signal. Fit on data where the attribute varies "
            "within a class (e.g. a group-balanced validation split).",
            UserWarning,
            stacklevel=4,
        )
    return cells


def check_grid(Cs):
    """``Cs`` as a float64 grid of positive finite values, or a clear error."""
    grid = np.asarray(Cs, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(
            f"SpuriousProbe: Cs must hold positive finite values; got {Cs!r}."
        )
    return grid


def cell_directions(X, T, codes, cells, *, direction, Cs, cv, random_state):
    """Direction, weight ``n p (1 - p)`` and C of every (concept, class) cell.

    ``"pattern"``: ``mean(z | t=1) - mean(z | t=0)`` within the cell (not
    normalised: their weighted sum is the pooled ``cov(z, t) / var(t)``), all
    cells of a concept from one product ``X.T @ M``; the returned C list is
    None. Classifier directions: the unit weight vector of one t-balanced model
    per cell, and the C chosen for each.
    """
    units = np.zeros((len(cells), X.shape[1]))
    weights = np.zeros(len(cells))
    chosen = None if direction == "pattern" else []
    if chosen is not None:
        rng = check_random_state(random_state)
        grid = check_grid(Cs)
    for j in np.unique([j for j, _ in cells]):
        mine = [k for k, (jj, _) in enumerate(cells) if jj == j]
        members = [np.flatnonzero(codes == cells[k][1]) if cells[k][1] is not None
                   else np.arange(X.shape[0]) for k in mine]
        for k, idx in zip(mine, members, strict=True):
            p = T[idx, j].mean()
            weights[k] = len(idx) * p * (1 - p)
        if chosen is None:
            # One pass: sums of z over the (cell, t) pairs of this concept.
            M = np.zeros((X.shape[0], 2 * len(mine)), X.dtype)
            for i, idx in enumerate(members):
                M[idx, 2 * i + T[idx, j]] = 1
            with np.errstate(over="ignore", invalid="ignore"):  # normalize() says it
                sums = (X.T @ M).T.astype(np.float64)
                means = sums / M.sum(axis=0, dtype=np.float64)[:, None]
                units[mine] = means[1::2] - means[0::2]
            continue
        for k, idx in zip(mine, members, strict=True):
            t = T[idx, j]
            n_min = min(int(t.sum()), len(t) - int(t.sum()))
            Xc = X if len(idx) == X.shape[0] else X[idx]
            w, C = _fit_concept_model(Xc, t, grid, min(cv, n_min), rng, direction)
            units[k] = normalize(w[None])[0]
            chosen.append(C)
    return units, weights, chosen


def _fit_concept_model(X, t, Cs, n_folds, rng, direction):
    """Weights (raw embedding space) of the chosen model for ``t`` and its C."""
    mean, scale = standardize_stats(X)
    seed = rng.randint(np.iinfo(np.int32).max)
    if n_folds >= 2 and len(Cs) > 1:
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        scores_auc = np.zeros((n_folds, len(Cs)))
        for f, (train, test) in enumerate(folds.split(np.zeros((len(t), 1)), t)):
            if direction in ("logistic", "lasso"):
                # One batched solve for every C (the solver's B problems).
                W = _concept_weights(X, t, Cs, mean, scale, seed, direction,
                                     subset=train)
            else:
                W = _concept_weights(X[train], t[train], Cs, mean, scale, seed,
                                     direction)
            scores = X[test] @ W.T.astype(X.dtype)
            scores_auc[f] = [auc(t[test], scores[:, k]) for k in range(len(Cs))]
        C = float(Cs[int(np.argmax(np.nanmean(scores_auc, axis=0)))])
    else:
        C = float(Cs[len(Cs) // 2])
    return _concept_weights(X, t, [C], mean, scale, seed, direction)[0], C


def _concept_weights(X, t, Cs, mean, scale, seed, direction, subset=None):
    """Raw-space weight vector for each C, shape (len(Cs), n_features)."""
    if direction in ("logistic", "lasso"):
        weights = np.zeros(len(t), X.dtype)
        sel = np.arange(len(t)) if subset is None else subset
        weights[sel] = balanced_weights(t[sel])
        pen = 1.0 / (np.asarray(Cs) * weights.sum())
        key = "l1" if direction == "lasso" else "l2"
        fit = fit_logistic(X, t.astype(np.intp), 2, weights=weights, **{key: pen},
                           mean=mean, scale=scale, max_iter=1000, tol=1e-4)
        return fit.coef[:, 0, :].astype(np.float64)
    Xs = (X - mean) / scale
    out = []
    with warnings.catch_warnings():
        # LinearSVC on a tiny or separable split may stop early; the CV picks
        # a C whose direction generalises regardless.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in Cs:
            if direction == "ridge":
                from sklearn.linear_model import RidgeClassifier

                model = RidgeClassifier(alpha=1.0 / C, class_weight="balanced")
            else:
                from sklearn.svm import LinearSVC

                model = LinearSVC(C=C, class_weight="balanced", dual="auto",
                                  max_iter=5000, random_state=seed)
            model.fit(Xs, t)
            out.append(np.asarray(model.coef_, np.float64).reshape(-1) / scale)
    return np.array(out)


def pool_directions(units, weights, cells, classes, names, *, pooling,
                    annotation_free):
    """Rows ``(direction, name, (concept, class))`` after pooling, and the signs.

    ``pooling="mean"``: the ``n p (1 - p)``-weighted mean of a concept's cells
    (sign-aligned for the annotation-free mode); ``"span"``: every cell's own
    direction. The second value is the per-class orientation of the mistakes
    (annotation-free mode), else None.
    """
    rows, signs = [], None
    for j in range(len(names)):
        mine = [k for k, (jj, _) in enumerate(cells) if jj == j]
        if not mine:
            continue
        if pooling == "span" and len(mine) > 1:
            for k in mine:
                label = classes[cells[k][1]]
                label = label.item() if hasattr(label, "item") else label
                rows.append((normalize(units[k][None])[0], (names[j], label),
                             cells[k]))
        elif annotation_free:
            u, signs = _aligned(normalize(units[mine]), weights[mine],
                                [cells[k][1] for k in mine], len(classes))
            rows.append((u, names[j], (j, None)))
        else:
            pooled = weights[mine] @ units[mine]
            rows.append((normalize(pooled[None])[0], names[j], (j, None)))
    return rows, signs


def _aligned(units, weights, classes_of_rows, n_classes):
    """Sign-aligned pooling of the per-class mistake directions.

    In class ``c`` the mistakes lie on the side of the class they are mistaken
    for, so the per-class directions of two classes sharing one shortcut point
    in opposite senses: their leading singular vector is the shared direction,
    whatever the signs. Returns it and each class's sign (0: no cell).
    """
    _, _, vt = np.linalg.svd(units * np.sqrt(weights)[:, None], full_matrices=False)
    u = vt[0]
    signs = np.sign(units @ u)
    if signs[0] < 0:  # deterministic orientation: the first class's mistakes +
        u, signs = -u, -signs
    per_class = np.zeros(n_classes)
    per_class[classes_of_rows] = signs
    return u, per_class


def reference_candidates(X, D, U, ref_mask):
    """The projection on each row of ``U`` for every named reference.

    ``"absent"`` is None when some concept has no sample without it.
    """
    k = U.shape[0]
    refs = {"zero": np.zeros(k), "mean": X.mean(axis=0, dtype=np.float64) @ U.T,
            "absent": None}
    n_ref = ref_mask.sum(axis=0)
    if k == 0:
        refs["absent"] = np.zeros(0)
    elif np.all(n_ref > 0):
        scores = (X @ D.T.astype(X.dtype)).astype(np.float64)
        p = np.where(ref_mask, scores, 0).sum(axis=0) / n_ref
        refs["absent"] = np.linalg.lstsq(D @ U.T, p, rcond=None)[0]
    return refs


def resolve_reference(reference, candidates, k):
    """The reference projections ``r`` (float64, shape (k,)) for ``reference``."""
    if isinstance(reference, str):
        r = candidates[reference]
        if r is None:
            raise ValueError(
                "SpuriousProbe: reference='absent' needs samples without the "
                "concept; every sample of the fit data has it. Use reference='mean' "
                "or 'zero'."
            )
        return r
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if r.size == 1:
        r = np.full(k, r[0])
    if r.shape != (k,):
        raise ValueError(
            f"SpuriousProbe: reference has {r.size} values but there are {k} "
            "directions; pass one value, or one per row of directions_."
        )
    if not np.all(np.isfinite(r)):
        raise ValueError(
            f"SpuriousProbe: reference must be finite; got {reference!r}. Pass a "
            "finite number, an array of them, or 'absent', 'mean' or 'zero'."
        )
    return r
