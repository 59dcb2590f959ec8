"""Exceptions raised by sklearn-spur."""

__all__ = ["MissingSpuriousError", "SpuriousNotRoutedError", "UnfittedHeadError"]


class MissingSpuriousError(ValueError):
    """An estimator needs the spurious attribute and did not receive it.

    The message says whether metadata routing is off (and gives the one
    ``sklearn.set_config`` line that fixes it) or the caller did not pass it.
    """


class SpuriousNotRoutedError(BaseException):
    """A worst-group scorer was called without the spurious attribute.

    This derives from :class:`BaseException` on purpose: scikit-learn's searches
    (``GridSearchCV``, ``cross_validate``) turn every :class:`Exception` raised by
    a scorer into a NaN score and a warning (``error_score=np.nan``), which would
    leave the user with a grid of NaN scores instead of the fix. Catch it by name.
    """


class UnfittedHeadError(ValueError):
    """A head passed as a scikit-learn classifier is not fitted.

    This happens most often because ``GridSearchCV`` and ``clone`` hand back an
    unfitted copy of every fitted estimator found in the parameters; wrap the head
    in :class:`sklearn.frozen.FrozenEstimator` to keep it fitted.
    """
