"""Exceptions raised by sklearn-spur."""

__all__ = ["MissingSpuriousError", "SpuriousNotRoutedError", "UnfittedHeadError"]


class MissingSpuriousError(ValueError):
    """An estimator needs the spurious attribute and did not receive it.

    The message says whether metadata routing is off (and gives the one
    ``sklearn.set_config`` line that fixes it) or the caller did not pass it.
    """


class SpuriousNotRoutedError(Exception):
    """A worst-group scorer was called without the spurious attribute.

    Its message gives the fix: turn metadata routing on
    (``sklearn.set_config(enable_metadata_routing=True)``), or pass ``spurious=``
    to the outermost ``fit``. scikit-learn's searches (``GridSearchCV``,
    ``cross_validate``, ``cross_val_score``) turn an exception raised by a scorer
    into a NaN score and a warning (``error_score=np.nan``); the worst-group
    scorer makes this one surface from the search anyway, so the user gets the
    error and not a grid of NaN scores (see :mod:`sklearn_spur._scorer`).
    """


class UnfittedHeadError(ValueError):
    """A head passed as a scikit-learn classifier is not fitted.

    This happens most often because ``GridSearchCV`` and ``clone`` hand back an
    unfitted copy of every fitted estimator found in the parameters; wrap the head
    in :class:`sklearn.frozen.FrozenEstimator` to keep it fitted.
    """
