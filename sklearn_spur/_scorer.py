"""The worst-group scorer, and how it refuses to be scored without ``spurious``.

scikit-learn's ``_score`` (``sklearn/model_selection/_validation.py``, the same
in 1.4 to 1.9) wraps the scorer call in ``try: ... except Exception:`` and, with
the default ``error_score=np.nan``, turns any exception into a NaN score plus a
``UserWarning`` (lost in worker processes with ``n_jobs > 1``); a dict of scorers
(``_MultimetricScorer``) stores the traceback text and does the same. A search
would then end with a grid of NaN scores and pick an arbitrary candidate.

Right after that ``try``, ``_score`` unwraps the score with ``score.item()``
(suppressing only ``ValueError``) and checks that it is a number, *outside* the
``try``. So when the scorer runs inside ``_score`` and ``spurious`` did not
arrive, it returns a placeholder whose ``item()`` raises
:class:`~sklearn_spur.exceptions.SpuriousNotRoutedError` (an ordinary
``Exception``): the search stops with that error and its fix. Called anywhere
else (directly, ``search.score``), the scorer raises it at once.
"""

from __future__ import annotations

import sys

from sklearn.metrics._scorer import _Scorer
from sklearn.utils.metadata_routing import MetadataRequest

from ._core.groups import missing_spurious_message, unexpected_params_message
from .exceptions import SpuriousNotRoutedError

__all__ = ["make_worst_group_scorer", "worst_group_scorer"]

_VALIDATION = "sklearn.model_selection._validation"


def _inside_sklearn_score(max_depth: int = 16) -> bool:
    """Whether scikit-learn's ``_validation._score`` is on the call stack."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return False
        if (frame.f_code.co_name == "_score"
                and frame.f_globals.get("__name__") == _VALIDATION):
            return True
        frame = frame.f_back
    return False


class _NotScored:
    """Stands for a score that could not be computed; any use of it raises.

    ``sign * score`` (done by scikit-learn's scorers) keeps the placeholder, so
    that the error surfaces where the score is unwrapped.
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error

    def item(self):
        raise self.error

    def __float__(self):
        raise self.error

    def __bool__(self):
        raise self.error

    def __mul__(self, other):
        return self

    __rmul__ = __mul__

    def __neg__(self):
        return self

    def __repr__(self):
        return f"<no score: {self.error}>"


def _worst_group_score(y_true, y_pred, *, spurious=None, missing="warn",
                       classes=None):
    from .metrics import _report

    return _report(y_true, y_pred, spurious, missing, classes=classes,
                   classes_name="estimator.classes_").worst_group_accuracy


def make_worst_group_scorer(*, missing="warn"):
    """A scorer for ``scoring=`` that computes worst-group accuracy.

    The scorer requests ``spurious`` by default: with
    ``sklearn.set_config(enable_metadata_routing=True)``,
    ``GridSearchCV(..., scoring=scorer).fit(X, y, spurious=s)`` routes each
    fold's attribute values to it. Called without them (routing off, or the
    attribute not passed), it raises
    :class:`~sklearn_spur.exceptions.SpuriousNotRoutedError` with the fix, and
    inside ``GridSearchCV``, ``cross_validate`` or ``cross_val_score`` that error
    stops the search instead of becoming NaN scores. Labels of the fold absent
    from ``estimator.classes_`` get a warning naming them.

    Parameters
    ----------
    missing : {"warn", "ignore", "raise"}, default="warn"
        Passed to :func:`worst_group_accuracy` (a fold may lack a small group).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, spurious=s)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur.metrics import make_worst_group_scorer
    >>> X = np.array([[0.], [1.], [2.], [3.]]); y = [0, 0, 1, 1]
    >>> scorer = make_worst_group_scorer()
    >>> scorer(LogisticRegression().fit(X, y), X, y, spurious=[0, 1, 0, 1])
    1.0
    """
    if missing not in ("warn", "ignore", "raise"):
        raise ValueError(
            f"missing must be 'warn', 'ignore' or 'raise', got {missing!r}.")
    scorer = _WorstGroupScorer(_worst_group_score, 1, {"missing": missing}, "predict")
    # Request `spurious` by default without requiring routing to be enabled at
    # import time (`set_score_request` refuses then): this is the request object
    # `set_score_request(spurious=True)` would build.
    request = MetadataRequest(owner=scorer)
    request.score.add_request(param="spurious", alias=True)
    scorer._metadata_request = request
    return scorer


class _WorstGroupScorer(_Scorer):
    """scikit-learn's scorer, callable with ``spurious=`` even when routing is off.

    Inside searches and ``cross_validate`` the attribute arrives through
    metadata routing; a direct call ``scorer(est, X, y, spurious=s)`` works in
    any configuration. A dict of scorers calls ``_score``, a single one
    ``__call__``: both go through ``_score``.
    """

    def __call__(self, estimator, X, y_true, *, spurious=None, **kwargs):
        return self._score(None, estimator, X, y_true, spurious=spurious, **kwargs)

    def _score(self, method_caller, estimator, X, y_true, *, spurious=None,
               **kwargs):
        if kwargs:
            raise TypeError(unexpected_params_message(
                "worst_group_scorer", kwargs, takes="estimator, X, y and spurious"))
        if spurious is None:
            error = SpuriousNotRoutedError(
                missing_spurious_message("worst_group_scorer"))
            if _inside_sklearn_score():
                return _NotScored(error)
            raise error
        y_pred = estimator.predict(X)
        score = self._score_func(y_true, y_pred, spurious=spurious,
                                 classes=getattr(estimator, "classes_", None),
                                 **self._kwargs)
        return self._sign * score

    def __repr__(self):
        return f"make_worst_group_scorer(missing={self._kwargs['missing']!r})"


worst_group_scorer = make_worst_group_scorer()
"""Ready-made worst-group accuracy scorer (see :func:`make_worst_group_scorer`)."""
