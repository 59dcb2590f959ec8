"""What the single-weight edit is made of: sub-classes, fictitious values, strengths.

:func:`subclass_plan` splits every class of a fit context into sub-classes
((class, attribute value) pairs, (class, inferred pseudo-group) pairs, or
(class, confidently right / other) read off the head's shared evidence) and picks the fictitious one of each class;
:func:`fictitious_values` makes the same choice in a training split and
returns it as the ``{class: value}`` mapping ``fictitious=`` takes.
:func:`warm_start` starts the sub-class head from the original one, and
:func:`subclass_cache_key` keys the editor's in-process fit cache.
:func:`strength_grid` and :func:`strength_shifts` map the degree of the edit
to the bias shift ``-log(1 - strength)`` (used on data by ``_editing_strength``).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from numbers import Real

import joblib
import numpy as np
from scipy.special import log_softmax
from sklearn.utils._param_validation import InvalidParameterError

from .._core.cache import update_hash
from .._core.groups import check_labels, check_spurious, encode_groups
from .._core.subclass_head import solver_rows

__all__ = [
    "SubclassPlan",
    "check_fictitious",
    "fictitious_values",
    "log_proba",
    "strength_grid",
    "strength_shifts",
    "subclass_cache_key",
    "subclass_plan",
    "warm_start",
]

_WHO = "SingleWeightEditor"
INFERRED_VALUES = ["confident", "other"]


@dataclass
class SubclassPlan:
    """The sub-class outputs of a fit (all small: cached with the solved head).

    Attributes
    ----------
    subclasses : list of tuple
        ``(class, value)`` of every output, class-major.
    output_class : ndarray of shape (n_outputs,)
        Class index of every output.
    counts : ndarray of shape (n_outputs,)
        Fitting samples per output.
    mask : ndarray of shape (n_outputs,) of bool
        The fictitious outputs.
    fictitious : dict
        ``{class: value}`` of every edited class.
    prior_shift : ndarray of shape (n_outputs,)
        The shift ``strength="prior"`` applies.
    """

    subclasses: list
    output_class: np.ndarray
    counts: np.ndarray
    mask: np.ndarray
    fictitious: dict
    prior_shift: np.ndarray


def fictitious_values(y, spurious):
    """The attribute value most associated with each class, as ``fictitious=`` takes it.

    Count it in the data the head was trained on and pass the mapping to a
    :class:`~sklearn_spur.SingleWeightEditor` fitted on other data (a
    group-balanced validation split, where the association is gone):
    ``SingleWeightEditor(fictitious=fictitious_values(y_train, s_train))``.
    A mapping of labels is a hyperparameter; the training data is not.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels of the training split.
    spurious : array-like of shape (n_samples,) or (n_samples, n_attributes)
        Attribute of the training split.

    Returns
    -------
    fictitious : dict
        ``{class: value}``: for every class, the value ``v`` with the highest
        ``P(class | v)`` (which ranks values as the lift ``P(v | class) / P(v)``
        does); tuples of values for several attributes. A tie warns and takes
        the first value.

    Examples
    --------
    >>> from sklearn_spur import fictitious_values
    >>> fictitious_values([0, 0, 0, 1, 1, 1],
    ...                   ["land", "land", "water", "water", "water", "land"])
    {0: 'land', 1: 'water'}
    """
    y = np.asarray(y)
    check_labels(y, "y")
    s = check_spurious(spurious, y.shape[0], who="fictitious_values")
    groups = encode_groups(y, s)
    table = groups.counts.reshape(len(groups.classes), len(groups.values))
    best = _most_associated(_lift(table), table > 0, groups.classes,
                            "the training labels", who="fictitious_values",
                            stacklevel=2)
    return {c: groups.values[j] for c, j in zip(groups.classes, best.tolist())}


def check_fictitious(fictitious, spurious):
    """Refuse a ``fictitious`` the fit cannot honour, naming the fix."""
    if isinstance(fictitious, tuple):
        raise InvalidParameterError(
            f"{_WHO}: fictitious=(y_train, spurious_train) passes data as a "
            "hyperparameter and is no longer accepted. Pass the mapping it stood "
            "for: fictitious=fictitious_values(y_train, spurious_train).")
    if spurious is None and isinstance(fictitious, dict):
        raise ValueError(
            f"{_WHO}: fictitious={{class: value}} names attribute values, but no "
            "`spurious` was given; pass `spurious=` or leave fictitious='head' "
            "(without it the confidently right samples of each class form its "
            "fictitious sub-class).")


def _lift(table):
    """``P(class | value)`` from a (class, value) count table."""
    table = table.astype(np.float64)
    return table / np.maximum(table.sum(0, keepdims=True), 1)


def _most_associated(association, present, classes, source, *, who=_WHO, stacklevel):
    """Index of each class's most associated present value; warns on ties."""
    association = np.where(present, association, -np.inf)
    top = association.max(axis=1, keepdims=True)
    tied = np.isfinite(top[:, 0]) & ((association >= top - 1e-9).sum(axis=1) > 1)
    if tied.any():
        warnings.warn(
            f"{who}: classes {np.asarray(classes)[tied].tolist()[:10]} are equally "
            f"associated with several attribute values in {source} (a balanced "
            "set?); the first is taken as fictitious. Use fictitious='head', "
            "fictitious_values(y_train, spurious_train), or a {class: value} mapping.",
            UserWarning, stacklevel=stacklevel + 1)
    return association.argmax(axis=1)


def _fictitious_index(ctx, rule):
    """Index into ``ctx.groups.values`` of each class's fictitious value (-1: none)."""
    groups, classes = ctx.groups, ctx.classes.tolist()
    n_values = len(groups.values)
    table = groups.counts.reshape(len(classes), n_values)
    if isinstance(rule, dict):
        lookup = {v: j for j, v in enumerate(groups.values)}
        unknown_classes = set(rule) - set(classes)
        unknown_values = [v for v in rule.values() if v not in lookup]
        if unknown_classes or unknown_values:
            raise ValueError(
                f"{_WHO}: fictitious names classes {sorted(unknown_classes, key=str)} "
                f"or values {unknown_values} absent from the fitting data (classes "
                f"{classes}, values {groups.values}).")
        return np.array([lookup[rule[c]] if c in rule else -1 for c in classes])
    if rule == "data":
        association = _lift(table)
    else:  # "head": mean head probability of class c among samples with value v
        proba = ctx.head.predict_proba(ctx.X)  # columns in ctx.classes order
        s_codes = groups.codes % n_values
        sums = np.zeros((n_values, len(classes)))
        np.add.at(sums, s_codes, proba)
        counts = np.bincount(s_codes, minlength=n_values)
        association = (sums / np.maximum(counts, 1)[:, None]).T
    # P(c | v) ranks values like the lift P(v | c) / P(v) within a class.
    return _most_associated(association, table > 0, ctx.classes, repr(rule),
                            stacklevel=8)


def subclass_plan(ctx, fictitious, confidence):
    """Sub-class index of every sample, and the :class:`SubclassPlan` of the outputs.

    With ``ctx.spurious`` the sub-classes are (class, value) pairs and
    ``fictitious`` picks one per class; without it, the (class, pseudo value)
    pairs of ``ctx.inferred`` (fictitious: 0), or with a ``confidence`` the
    head's evidence splits each class into the samples it gets right with
    probability at least ``confidence`` (fictitious) and the others.
    """
    n_classes = ctx.n_classes
    inferred = ctx.spurious is None and confidence is None
    if inferred:
        n_values = int(ctx.shared["inferred_strata_values"])
        codes = n_values * ctx.y_idx + ctx.inferred
        values = list(range(n_values))
        fict_value = np.zeros(n_classes, np.int64)  # the head's confident majority
    elif ctx.spurious is None:
        evidence = ctx.evidence  # the shared evidence of the original head
        confident = ~evidence.wrong & (evidence.proba_true >= confidence)
        codes = 2 * ctx.y_idx + (~confident)
        values = list(INFERRED_VALUES)
        fict_value = np.zeros(n_classes, np.int64)  # "confident"
    else:
        codes, values = ctx.groups.codes, ctx.groups.values
        fict_value = _fictitious_index(ctx, fictitious)
    n_values = len(values)
    counts = np.bincount(codes, minlength=n_classes * n_values)
    outputs = np.flatnonzero(counts)
    remap = np.full(counts.shape[0], -1)
    remap[outputs] = np.arange(len(outputs))
    out_class = outputs // n_values
    out_counts = counts[outputs]

    # One fictitious output per class that also has a core output.
    fict_code = np.arange(n_classes) * n_values + fict_value
    per_class = np.bincount(out_class, minlength=n_classes)
    editable = (fict_value >= 0) & (per_class >= 2)
    editable &= counts[np.where(fict_value >= 0, fict_code, 0)] > 0
    class_list = ctx.classes.tolist()
    skipped = [c for c, ok in zip(class_list, editable) if not ok]
    if skipped:
        warnings.warn(
            f"{_WHO}: classes {skipped[:10]} have no fictitious sub-class with both it "
            "and a core sub-class present in the fitting data; their outputs are not "
            "edited.", UserWarning, stacklevel=7)
    mask = np.zeros(len(outputs), bool)
    mask[remap[fict_code[editable]]] = True

    core_mean = (np.bincount(out_class, weights=np.where(mask, 0, out_counts),
                             minlength=n_classes) / np.maximum(per_class - 1, 1))
    with np.errstate(divide="ignore"):
        prior = np.log(out_counts / np.maximum(core_mean[out_class], 1e-300))
    # With `confidence` the "other" sub-class is the head's hard cases, not a
    # group: its rarity is no spurious prior, so "prior" does not edit.
    prior_shift = np.where(mask & (ctx.spurious is not None or inferred),
                           np.maximum(prior, 0), 0.0).astype(ctx.X.dtype)
    plan = SubclassPlan(
        subclasses=[(class_list[code // n_values], values[code % n_values])
                    for code in outputs.tolist()],
        output_class=out_class, counts=out_counts, mask=mask,
        fictitious={class_list[c]: values[fict_value[c]]
                    for c in np.flatnonzero(editable)},
        prior_shift=prior_shift)
    return remap[codes], plan


def warm_start(ctx, plan):
    """The parent class's row of the original head for every output, in solver rows.

    Its bias is split by sub-class frequency, so the pooled class logits start
    exactly at the original head's.
    """
    w_full, b_full = ctx.head.full()  # rows in ctx.classes order
    rows = plan.output_class
    class_counts = np.bincount(ctx.y_idx, minlength=ctx.n_classes)
    coef = w_full[rows].astype(ctx.X.dtype)
    intercept = (b_full[rows] + np.log(plan.counts / class_counts[rows])
                 ).astype(ctx.X.dtype)
    return solver_rows(coef, intercept)


def subclass_cache_key(estimator, ctx):
    """A SHA-256 of everything a fit reads: data, head, class and every parameter.

    Left out: ``strength`` (read at prediction), ``memory`` and ``verbose``.
    """
    h = hashlib.sha256()  # hardware-accelerated on most CPUs: ~2x blake2b here
    update_hash(h, ctx.X)
    params = {k: v for k, v in estimator.get_params(deep=False).items()
              if k not in ("head", "strength", "memory", "verbose")}
    head = None if ctx.head is None else (ctx.head.coef, ctx.head.intercept,
                                          ctx.head.classes)
    small = (type(estimator).__module__, type(estimator).__qualname__, params,
             ctx.y, ctx.spurious, head)
    h.update(joblib.hash(small).encode())
    return h.hexdigest()


def strength_grid(n_strengths=25, max_shift=8.0, *, include_one=False):
    """Strengths whose bias shifts ``-log(1 - strength)`` are evenly spaced.

    The shift that cancels a spurious prior is about the log-odds of the
    attribute given the class in the data the sub-class head was fitted on
    (``log(0.95 / 0.05) = 2.9`` at 95 % agreement, ``4.6`` at 99 %), where an
    even grid in ``strength`` is far too coarse: 0.9 and 0.99 are shifts 2.3 and
    4.6. This grid is even in the shift instead, so it is as fine near 0.95 as
    near 0.

    Parameters
    ----------
    n_strengths : int, default=25
        Number of strengths (0 included).
    max_shift : float, default=8.0
        Largest bias shift (strength ``1 - exp(-max_shift)``); 8 covers
        attribute-class agreement up to 99.97 %.
    include_one : bool, default=False
        Append strength 1 (fictitious sub-classes removed exactly).

    Returns
    -------
    strengths : ndarray of shape (n_strengths,) or (n_strengths + 1,)
        Increasing, from 0.

    Examples
    --------
    >>> from sklearn_spur import strength_grid
    >>> strength_grid(5, max_shift=4.0).round(3)
    array([0.   , 0.632, 0.865, 0.95 , 0.982])
    """
    if int(n_strengths) < 1 or not max_shift > 0:
        raise ValueError("strength_grid: n_strengths must be >= 1 and max_shift > 0.")
    strengths = -np.expm1(-np.linspace(0.0, float(max_shift), int(n_strengths)))
    return np.append(strengths, 1.0) if include_one else strengths


def strength_shifts(strengths, mask, prior_shift):
    """Bias shift of every output at each strength: (n_strengths, n_outputs).

    ``-log(1 - strength)`` on the fictitious outputs (``mask``), 0 elsewhere;
    ``"prior"`` is ``prior_shift``.
    """
    rows = []
    for strength in strengths:  # strengths, not samples
        if isinstance(strength, str) and strength == "prior":
            rows.append(prior_shift)
            continue
        numeric = isinstance(strength, Real) and not isinstance(strength, bool)
        if not (numeric and 0 <= strength <= 1):
            raise ValueError(
                f"{_WHO}: strength must be in [0, 1] or 'prior', got {strength!r}.")
        with np.errstate(divide="ignore"):
            lam = -np.log1p(-float(strength))
        rows.append(np.where(mask, lam, 0.0))
    return np.array(rows, dtype=np.float64)


def log_proba(scores):
    """``predict_log_proba`` from class scores, as ``SpurClassifierBase`` has it."""
    if scores.ndim == 1:
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    return log_softmax(scores, axis=1)
