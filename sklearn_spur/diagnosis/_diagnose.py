"""``diagnose``: one call from a trained head and its splits to a report."""

from __future__ import annotations

import time
from numbers import Integral
from types import SimpleNamespace

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_array

from .._core.base import FLOAT_DTYPES
from .._core.groups import check_labels, check_spurious, encode_groups, host_array
from .._core.heads import resolve_head
from .._core.progress import progress_bar
from .._core.selection import stratified_halves
from ..concepts import GroupInferrer
from ._compare import (
    applicable_methods,
    choose,
    compare_methods,
    editor_curve,
    evaluate,
)
from ._evidence import probe_evidence, slice_evidence
from ._recommend import group_section, recommendation
from ._report import Diagnosis

__all__ = ["diagnose"]

_WHO = "diagnose"


def _split(X, y, spurious, rows=None):
    if rows is None:
        return SimpleNamespace(X=X, y=y, spurious=spurious)
    return SimpleNamespace(X=X[rows], y=y[rows],
                           spurious=None if spurious is None else spurious[rows])


def _check_split(name, X, y, spurious, n_features=None):
    X = host_array(X)
    if X is None or y is None:
        raise ValueError(f"{_WHO}: pass both X_{name} and y_{name} (or neither for "
                         "the test split).")
    X = check_array(X, dtype=FLOAT_DTYPES, input_name=f"X_{name}")
    y = np.asarray(host_array(y))
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{_WHO}: y_{name} must be 1-D with one label per row of "
                         f"X_{name} ({X.shape[0]} rows); got shape {y.shape}.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{_WHO}: X_{name} has {X.shape[1]} features, X_train "
                         f"{n_features}: pass embeddings of the same layer.")
    check_labels(y, f"y_{name}")
    s = check_spurious(spurious, X.shape[0], who=_WHO, required=False,
                       name=f"spurious_{name}")
    return _split(X, y, s)


def _check_images(images, n_val):
    if images is None:
        return None
    images = np.asarray(host_array(images))
    if images.ndim not in (3, 4) or images.shape[0] != n_val:
        raise ValueError(f"{_WHO}: images_val must be an array (n_val, H, W[, C]) or "
                         f"(n_val, C, H, W) with n_val = {n_val}; got shape "
                         f"{images.shape}.")
    return images


@validate_params(
    {"X_train": ["array-like"], "y_train": ["array-like"], "X_val": ["array-like"],
     "y_val": ["array-like"], "spurious_train": ["array-like", None],
     "spurious_val": ["array-like", None], "X_test": ["array-like", None],
     "y_test": ["array-like", None], "spurious_test": ["array-like", None],
     "images_val": ["array-like", None],
     "n_boot": [Interval(Integral, 10, None, closed="left")],
     "n_typical": [Interval(Integral, 1, None, closed="left")],
     "random_state": ["random_state"], "verbose": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def diagnose(head, X_train, y_train, X_val, y_val, *, spurious_train=None,
             spurious_val=None, X_test=None, y_test=None, spurious_test=None,
             images_val=None, n_boot=1000, n_typical=8, random_state=None,
             verbose=False):
    """Diagnose a trained head: its groups, its shortcut, the fix to deploy.

    Measures the head's accuracy on every group with bootstrap intervals,
    gathers the evidence of a shortcut (the annotated attribute's probe, or
    slices found without labels), fits every method the available labels allow
    and recommends one, chosen on a held-out part of the validation split.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple or fitted classifier
        The deployed last layer (what the estimators take as ``head=``).
    X_train, y_train : array-like of shape (n_train, n_features), (n_train,)
        Embeddings and labels of the split the head was trained on.
    X_val, y_val : array-like of shape (n_val, n_features), (n_val,)
        Held-out embeddings and labels: the methods are fitted on one half
        (stratified by group when annotated, else by class) and chosen on the
        other.
    spurious_train, spurious_val : array-like of shape (n,), default=None
        The spurious attribute of the training and validation splits. Without
        ``spurious_val`` the diagnosis uses no group label to fit or choose:
        only label-free methods run, the choice is by worst accuracy over
        groups inferred by :func:`~sklearn_spur.infer_groups`, and ``spurious_train`` only
        weights the adjusted mean accuracy.
    X_test, y_test : array-like, default=None
        An evaluation split; without it the held-out half of the validation
        split is the evaluation split (the one the choice was made on, so the
        recommended method's numbers there are optimistic).
    spurious_test : array-like of shape (n_test,), default=None
        The attribute of the test split, for the report only: it never
        influences the choice. Without true groups on the evaluation split the
        groups are inferred (:func:`~sklearn_spur.infer_groups`' default,
        fitted on the fitting half).
    images_val : array-like of shape (n_val, H, W[, C]), default=None
        Raw validation images (channels first, ``(n_val, C, H, W)``, also
        accepted): thumbnails of every slice's typical samples.
    n_boot : int, default=1000
        Bootstrap resamples of every interval (95 %, percentile).
    n_typical : int, default=8
        Typical samples shown per slice.
    random_state : int, RandomState instance or None, default=None
        Seeds the split of the validation data, the methods and the bootstrap.
    verbose : bool, default=False
        Show a tqdm progress bar, one step per method.

    Returns
    -------
    diagnosis : Diagnosis
        With ``recommended_``, the chosen method refitted on the whole
        validation split, and ``to_html``, ``to_markdown`` and ``to_dict``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import diagnose
    >>> rng = np.random.default_rng(0)
    >>> def split(n, rho):
    ...     y = rng.integers(0, 2, n); s = np.where(rng.random(n) < rho, y, 1 - y)
    ...     return np.c_[y + rng.normal(0, .8, n), s + rng.normal(0, .1, n)], y, s
    >>> (Xt, yt, st), (Xv, yv, sv) = split(1000, .9), split(600, .5)
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))  # leans on the attribute
    >>> d = diagnose(head, Xt, yt, Xv, yv, spurious_val=sv, n_boot=100,
    ...              random_state=0)
    >>> d.recommendation_["name"] != "ERM"
    True
    >>> bool(d.recommended_.predict(Xv[:5]).shape == (5,))
    True
    """
    start = time.perf_counter()
    if head is None:
        raise ValueError(f"{_WHO}: pass the deployed head (nn.Linear, (W, b) tuple "
                         "or fitted classifier); the diagnosis is of that head.")
    train = _check_split("train", X_train, y_train, spurious_train)
    d = train.X.shape[1]
    val = _check_split("val", X_val, y_val, spurious_val, d)
    test = None
    if X_test is not None or y_test is not None:
        test = _check_split("test", X_test, y_test, spurious_test, d)
    elif spurious_test is not None:
        raise ValueError(f"{_WHO}: spurious_test without X_test and y_test.")
    images = _check_images(images_val, val.X.shape[0])
    resolve_head(head, val.X, val.y, who=_WHO)  # width and classes, clear errors
    seed = (int(random_state) if isinstance(random_state, Integral)
            else int(check_random_state(random_state).randint(2**31 - 1)))
    annotated = val.spurious is not None

    strata = (encode_groups(val.y, val.spurious).codes if annotated
              else np.unique(val.y, return_inverse=True)[1].ravel())
    fit_rows = stratified_halves(strata, np.random.default_rng(seed))
    splits = SimpleNamespace(train=train, fit=_split(val.X, val.y, val.spurious,
                                                     fit_rows),
                             select=_split(val.X, val.y, val.spurious, ~fit_rows))
    evaluation = test if test is not None else splits.select
    source = ("spurious_test" if test is not None and test.spurious is not None else
              "spurious_val" if test is None and annotated else "inferred")
    if source == "inferred":  # true groups unknown there: inferred ones
        inferrer = GroupInferrer(head=head, method="auto",
                                 random_state=seed).fit(splits.fit.X, splits.fit.y)
        evaluation = _split(evaluation.X, evaluation.y,
                            inferrer.predict(evaluation.X, evaluation.y))
    splits.evaluation = evaluation
    weights = ((train.y, train.spurious) if train.spurious is not None
               and source != "inferred" else None)

    keys, skipped = applicable_methods(train.spurious is not None, annotated)
    caught = []
    with progress_bar(verbose, total=len(keys) + 2, desc=_WHO,
                      unit="step") as progress:
        if annotated:
            progress.set_postfix_str("probe")
            shortcut = probe_evidence(head, splits.fit, splits.select, evaluation
                                      if source != "inferred" else splits.select,
                                      seed)
        else:
            progress.set_postfix_str("slices")
            shortcut = slice_evidence(head, val.X, val.y, n_typical=n_typical,
                                      random_state=seed)
        progress.update()
        rows, fitted, reports = compare_methods(
            keys, splits, head, annotated=annotated, weights=weights, n_boot=n_boot,
            seed=seed, progress=progress, caught=caught)
        best = choose(rows)
        rows[best]["recommended"] = True
        key = rows[best]["key"]
        progress.set_postfix_str("refit")
        from .._cli_methods import METHODS

        recommended = METHODS[key].fit(train, val, head, seed)
        deployed = (evaluate(recommended, evaluation, weights=weights, n_boot=n_boot,
                             seed=seed) if test is not None else None)
        curve = editor_curve(fitted, evaluation)
        progress.update()

    head_ci, rec_ci = reports["erm"], reports[key]  # measured in the comparison
    setting = {
        "annotated": annotated,
        "evaluation": "test" if test is not None else "validation (held-out half)",
        "evaluation_groups": source,
        "n_train": int(train.X.shape[0]), "n_val": int(val.X.shape[0]),
        "n_fit": int(fit_rows.sum()), "n_select": int((~fit_rows).sum()),
        "n_evaluation": int(evaluation.X.shape[0]), "n_boot": int(n_boot),
        "random_state": seed,
        "selection": ("worst-group accuracy (spurious_val)" if annotated else
                      "worst accuracy over groups inferred by infer_groups from the head "
                      "(no group label)"),
        "skipped": skipped, "warnings": caught,
    }
    sections = {
        "setting": setting,
        "groups": group_section(head_ci, rec_ci, rows[best]["name"], source, train),
        "shortcut": shortcut,
        "methods": rows,
        "strength_curve": curve,
        "recommendation": recommendation(rows, best, setting, deployed, fitted,
                                         seed),
    }
    thumbnails = None
    if images is not None and shortcut["kind"] == "slices":
        thumbnails = [images[s["typical"]] for s in shortcut["slices"]]
    setting["seconds"] = time.perf_counter() - start
    return Diagnosis(sections, recommended, thumbnails=thumbnails)
