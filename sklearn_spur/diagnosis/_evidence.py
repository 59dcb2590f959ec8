"""Shortcut evidence: the probe of an annotated attribute, or discovered slices.

With the attribute annotated on the validation split, a
:class:`~sklearn_spur.SpuriousProbe` fitted on the fitting part measures how
well its direction separates the attribute on held-out data (ROC AUC within
class) and how much the head's logits move along it (``W v``). Without it,
:func:`~sklearn_spur.infer_groups` splits every class of the validation split
into slices, each reported with its size, the head's accuracy on it and its
most typical samples (nearest to the slice's mean in embedding space).
"""

from __future__ import annotations

import numpy as np

from .._cli_output import _label, _number
from .._core.groups import encode_groups
from .._core.heads import resolve_head
from ..concepts import SpuriousProbe, infer_groups

__all__ = ["probe_evidence", "slice_evidence"]

N_BINS = 30


def probe_evidence(head, fit, held_out, evaluation, random_state):
    """Separability and head sensitivity of the annotated attribute.

    ``fit``, ``held_out`` and ``evaluation`` are splits (``X``, ``y``,
    ``spurious``): the probe is fitted on the first, its AUC measured on the
    second, and the histograms of its first concept's scores drawn on the
    third, per group.
    """
    probe = SpuriousProbe(random_state=random_state).fit(
        fit.X, fit.y, spurious=fit.spurious)
    auc = probe.separability(held_out.X, held_out.spurious, held_out.y)
    sensitivity = probe.head_sensitivity(head)
    W, _ = resolve_head(head).full()
    norms = np.linalg.norm(np.asarray(W, np.float64), axis=1)[:, None]
    classes = resolve_head(head).classes
    concepts = [{"concept": probe.concept_label(i), "separability": _number(auc[i]),
                 "sensitivity": [{"class": _label(c.item() if hasattr(c, "item")
                                                  else c),
                                  "w_dot_v": float(sensitivity[k, i]),
                                  "cosine": float(sensitivity[k, i] / norms[k, 0])}
                                 for k, c in enumerate(classes)]}
                for i in range(len(probe.concepts_))]
    return {"kind": "probe", "concepts": concepts,
            "histogram": _histogram(probe.concept_scores(evaluation.X)[:, 0],
                                    evaluation.y, evaluation.spurious)}


def _histogram(scores, y, spurious):
    """Counts of the concept scores of every (class, value) group, shared bins."""
    edges = np.histogram_bin_edges(scores, bins=N_BINS)
    groups = encode_groups(y, spurious)
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, N_BINS - 1)
    counts = np.bincount(groups.codes * N_BINS + bins,
                         minlength=groups.n_groups * N_BINS).reshape(-1, N_BINS)
    return {"edges": edges.tolist(),
            "groups": [{"class": _label(groups.label(k)[0]),
                        "spurious": _label(groups.label(k)[1]),
                        "counts": counts[k].tolist()}
                       for k in np.flatnonzero(groups.counts)]}


def slice_evidence(head, X, y, *, n_typical, random_state):
    """Slices of every class of ``(X, y)``: pseudo-groups, worst first.

    Returns the section and the typical samples' row indices of each slice.
    """
    linear = resolve_head(head)
    pseudo = infer_groups(X, y, head=head, random_state=random_state)
    correct = linear.predict(X) == y
    classes, y_idx = np.unique(y, return_inverse=True)
    codes, inverse = np.unique(np.c_[y_idx.ravel(), pseudo], axis=0,
                               return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse)
    accuracy = np.bincount(inverse, weights=correct) / sizes
    slices = []
    for k in np.argsort(accuracy, kind="stable"):  # slices, not samples
        members = np.flatnonzero(inverse == k)
        Xk = np.asarray(X[members], np.float64)
        distance = ((Xk - Xk.mean(axis=0)) ** 2).sum(axis=1)
        typical = members[np.argsort(distance, kind="stable")[:n_typical]]
        cls = classes[codes[k, 0]]
        slices.append({"class": _label(cls.item() if hasattr(cls, "item") else cls),
                       "slice": int(codes[k, 1]), "size": int(sizes[k]),
                       "accuracy": float(accuracy[k]),
                       "typical": [int(i) for i in typical]})
    return {"kind": "slices", "slices": slices}
