"""The registry of the package's estimators, like :func:`sklearn.utils.discovery.all_estimators`.

Tests, the command line and the benchmarks read it, together with what each
method declares it needs (:func:`requirements`): there is no hand-kept list.
"""

from __future__ import annotations

import inspect

from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

__all__ = ["all_estimators", "requirements"]

_TYPES = {"classifier": ClassifierMixin, "transformer": TransformerMixin}


def all_estimators(type_filter=None, *, include_torch=True):
    """The public estimators of sklearn-spur, as ``(name, class)`` pairs.

    Parameters
    ----------
    type_filter : {"classifier", "transformer"}, list of them, or None
        Keep only estimators of these kinds; ``None`` keeps all.
    include_torch : bool, default=True
        List the estimators that need torch (the extractor), importing torch.
        ``False`` leaves them out and imports nothing of torch.

    Returns
    -------
    estimators : list of (str, type)
        Sorted by name. The torch extractor is listed only when torch imports.

    Examples
    --------
    >>> from sklearn_spur.utils.discovery import all_estimators
    >>> names = [name for name, _ in all_estimators("classifier")]
    >>> "DFRClassifier" in names and "ERMClassifier" in names
    True
    """
    import sklearn_spur

    names = [n for n in sklearn_spur.__all__
             if include_torch or n not in sklearn_spur._TORCH_NAMES]
    found = {}
    for name in names:
        try:
            obj = getattr(sklearn_spur, name)
        except ImportError:  # the torch names, without torch
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            found[name] = obj
    if type_filter is not None:
        kinds = [type_filter] if isinstance(type_filter, str) else list(type_filter)
        unknown = set(kinds) - set(_TYPES)
        if unknown:
            raise ValueError(f"type_filter: unknown kinds {sorted(unknown)}; use "
                             f"{list(_TYPES)} or None.")
        found = {n: c for n, c in found.items()
                 if any(issubclass(c, _TYPES[k]) for k in kinds)}
    return sorted(found.items())


def requirements(estimator):
    """What a method needs, as it declares it.

    Parameters
    ----------
    estimator : estimator class or instance

    Returns
    -------
    needs : dict
        ``group_labels`` ("required", "optional" or "none": ``spurious`` on the
        data it is fitted on), ``label_free`` (without ``spurious`` neither its
        fit nor its selection reads group labels), ``head`` ("required",
        "optional" or "none": the original head) and ``fit_on`` (the split it
        is meant to be fitted on).

    Examples
    --------
    >>> from sklearn_spur import DFRClassifier
    >>> from sklearn_spur.utils.discovery import requirements
    >>> requirements(DFRClassifier)["group_labels"]
    'required'
    """
    cls = estimator if inspect.isclass(estimator) else type(estimator)
    request = False
    for base in reversed(cls.__mro__):  # the class-level requests, name-mangled
        for attr, value in vars(base).items():
            if attr.endswith("__metadata_request__fit") and "spurious" in value:
                request = value["spurious"]
    needed = getattr(cls, "_needs_group_labels", False)
    return {
        "group_labels": "required" if needed else ("optional" if request is True
                                                   else "none"),
        "label_free": bool(getattr(cls, "_label_free", not needed)),
        "head": {"no": "none"}.get(getattr(cls, "_uses_head", "no"),
                                   getattr(cls, "_uses_head", "no")),
        "fit_on": getattr(cls, "_fit_on", "validation"),
    }
