"""Base classes and validation shared by every estimator of the package.

Estimators subclass :class:`SpurClassifierBase` (or :class:`LinearSpurClassifier`
when they end in ``coef_``/``intercept_``) and call :meth:`_validate_fit_inputs`
once at the top of ``fit``; prediction, probability, ``to_torch`` and tags come
from here, so no estimator repeats them.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .groups import check_labels, check_spurious, host_array
from .heads import LinearHead
from .persist import decode_state, encode_state

FLOAT_DTYPES = (np.float64, np.float32)


def _half_to_single(X):
    """float16 embeddings (an array or an all-float16 DataFrame) become float32.

    scikit-learn's validation would upcast them to float64 (the first of
    ``FLOAT_DTYPES``); float32 is the precision they need and keeps memory low.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and len(dtypes) and all(d == np.float16 for d in dtypes):
        return X.astype(np.float32)
    if getattr(X, "dtype", None) == np.float16:
        return X.astype(np.float32)
    return X


def _on_accelerator(obj) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    if isinstance(obj, torch.Tensor):
        return obj.device.type != "cpu"
    if isinstance(obj, torch.nn.Module):
        return any(t.device.type != "cpu" for t in obj.state_dict().values())
    return False


def _cpu_copy(obj):
    """``obj`` with torch tensors and modules off the accelerator (copies; never in place)."""
    if isinstance(obj, tuple):
        return tuple(_cpu_copy(o) for o in obj)
    if not _on_accelerator(obj):
        return obj
    if hasattr(obj, "detach"):
        return obj.detach().cpu()
    return copy.deepcopy(obj).cpu()


def _check_X_form(X, who):
    """Clear errors, naming ``X``, for a wrong rank or a complex dtype.

    Checked before scikit-learn's validation, whose messages for these cases
    print the whole array and do not say which argument is wrong.
    """
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) != 2:
        hint = (" Reshape your data: X.reshape(1, -1) for a single sample." if len(shape) == 1
                else " Reshape your data: pool or flatten to one row per sample.")
        raise ValueError(
            f"{who}: X must be 2-D embeddings of shape (n_samples, n_features); got "
            f"shape {tuple(shape)} ({len(shape)}-D).{hint}"
        )
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "c":
        raise ValueError(
            f"Complex data not supported: {who} takes real-valued embeddings X; got "
            f"dtype {dtype}."
        )


def scores_to_index(scores):
    """The one prediction rule: the binary logit's sign, or the argmax of C scores."""
    return (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)


class SpurClassifierBase(ClassifierMixin, BaseEstimator):
    """Validation, tags and probability helpers for the package's classifiers.

    Subclasses implement ``fit`` and ``decision_function``; ``predict``,
    ``predict_proba`` and ``predict_log_proba`` derive from the latter.
    """

    # `spurious` is requested by default in fit and score, so routing works after
    # the single `sklearn.set_config(enable_metadata_routing=True)` line.
    __metadata_request__fit = {"spurious": True}

    def __getstate__(self):
        # Parameters holding torch objects on an accelerator (a `head=` fitted on
        # GPU) are pickled from a CPU copy, so the pickle loads on CPU-only
        # machines (fitted attributes are numpy arrays already).
        state = super().__getstate__()
        return encode_state({k: _cpu_copy(v) for k, v in state.items()})

    def __setstate__(self, state):
        super().__setstate__(decode_state(state))

    def _validate_fit_inputs(self, X, y, spurious=None, *, spurious_required=False,
                             reset=True):
        """Validate ``X``, ``y`` and ``spurious`` together, as every ``fit`` must.

        Returns ``X`` (float32 or float64, never copied when already so), ``y``,
        and ``spurious`` (None when absent and not required).
        """
        who = type(self).__name__
        X, y = _half_to_single(host_array(X)), host_array(y)
        _check_X_form(X, who)
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES, reset=reset)
        check_labels(y, "y")
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y; got 1 class: "
                f"{classes.tolist()}."
            )
        s = check_spurious(spurious, X.shape[0], who=type(self).__name__,
                           required=spurious_required)
        return X, y, s

    def _validate_X(self, X):
        check_is_fitted(self)
        X = _half_to_single(host_array(X))
        _check_X_form(X, type(self).__name__)
        return validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        index = scores_to_index(self.decision_function(X))
        return self.classes_[index]

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        return log_softmax(scores, axis=1)

    def predict_proba(self, X):
        """Class probabilities (softmax of the class logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return np.exp(self.predict_log_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_class = True
        return tags


class LinearSpurClassifier(SpurClassifierBase):
    """A classifier whose fitted model is one linear layer ``coef_``, ``intercept_``.

    Gives ``decision_function`` and ``to_torch`` from those two attributes, in
    scikit-learn's convention (a single row for two classes).
    """

    def _linear_head(self) -> LinearHead:
        check_is_fitted(self)
        return LinearHead(self.coef_, self.intercept_, self.classes_)

    def decision_function(self, X):
        """Class scores ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The logit of ``classes_[1]`` for two classes.
        """
        X = self._validate_X(X)
        return self._linear_head().decision_function(X)

    def to_torch(self, dtype=None):
        """The fitted head as a ``torch.nn.Linear`` (one output per class).

        Parameters
        ----------
        dtype : torch.dtype, default=None
            Parameter dtype; float32 by default.

        Returns
        -------
        module : torch.nn.Linear
            Logits for ``classes_`` in order, 2 outputs for 2 classes.
        """
        from ..torch.export import to_torch

        return to_torch(self, dtype=dtype)
