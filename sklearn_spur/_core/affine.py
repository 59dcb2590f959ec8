"""Pull a linear head back through the affine steps of a fitted Pipeline.

``pullback(step, w, b)`` returns ``(w', b')`` with
``step.transform(x) @ w.T + b == x @ w'.T + b'`` exactly (up to rounding), or
None when the step is not affine. It honours every option that changes the map
(``StandardScaler(with_mean=False)`` leaves the data uncentred although
scikit-learn still sets ``mean_``; ``PCA(whiten=True)`` divides by the clipped
component scales; ``MinMaxScaler(clip=True)`` is not affine).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["pullback", "pullback_steps"]


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _scale_shift(w, b, scale=None, shift=None):
    """Pull back through ``x -> (x - shift) / scale`` (either may be None)."""
    if scale is not None:
        w = w / _f64(scale)
    if shift is not None:
        b = b - w @ _f64(shift)
    return w, b


def _pca_like(step, w, b, *, center):
    scale = None
    if getattr(step, "whiten", False):
        # as in sklearn.decomposition._base._BasePCA._transform
        variance = np.asarray(step.explained_variance_)
        eps = np.finfo(variance.dtype if variance.dtype.kind == "f" else np.float64).eps
        scale = np.maximum(np.sqrt(_f64(variance)), eps)
    if scale is not None:
        w = w / scale
    w = w @ _f64(step.components_)
    if center:
        b = b - w @ _f64(step.mean_)
    return w, b


def pullback(step, w, b):
    """Pull a linear head ``(w, b)`` back through a fitted transformer step.

    Returns ``(w', b')`` with ``step.transform(x) @ w.T + b == x @ w'.T + b'``,
    or None when the step is not affine. Knows ``"passthrough"``, an identity
    FunctionTransformer, StandardScaler, RobustScaler, MaxAbsScaler,
    MinMaxScaler (``clip=False``), PCA and IncrementalPCA (also whitened),
    TruncatedSVD, nested Pipelines, FrozenEstimator around any of them, and any
    object with a ``_pullback(w, b)`` method (this package's transformers).
    """
    from sklearn.decomposition import PCA, IncrementalPCA, TruncatedSVD
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        RobustScaler,
        StandardScaler,
    )

    if isinstance(step, FrozenEstimator):
        step = step.estimator
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return w, b
    if hasattr(step, "_pullback"):
        return step._pullback(w, b)
    if isinstance(step, Pipeline):
        try:
            return pullback_steps(step.steps, w, b)
        except TypeError:
            return None
    if isinstance(step, FunctionTransformer):
        return (w, b) if step.func is None else None
    if not isinstance(step, (StandardScaler, RobustScaler, MaxAbsScaler, MinMaxScaler,
                             PCA, IncrementalPCA, TruncatedSVD)):
        return None
    check_is_fitted(step)
    w, b = _f64(w), _f64(b)
    if isinstance(step, StandardScaler):
        # `mean_` is set even when with_mean=False: the flags decide.
        return _scale_shift(w, b, step.scale_ if step.with_std else None,
                            step.mean_ if step.with_mean else None)
    if isinstance(step, RobustScaler):
        return _scale_shift(w, b, step.scale_ if step.with_scaling else None,
                            step.center_ if step.with_centering else None)
    if isinstance(step, MaxAbsScaler):
        return None if getattr(step, "clip", False) else _scale_shift(w, b, step.scale_)
    if isinstance(step, MinMaxScaler):
        if step.clip:
            return None
        # x * scale_ + min_
        return w * _f64(step.scale_), b + w @ _f64(step.min_)
    if isinstance(step, TruncatedSVD):
        return _pca_like(step, w, b, center=False)
    return _pca_like(step, w, b, center=True)


def _is_extractor(step) -> bool:
    return any(c.__name__ == "TorchFeatureExtractor" for c in type(step).__mro__)


def pullback_steps(steps, w, b, *, who="to_torch"):
    """Pull ``(w, b)`` back through Pipeline ``steps`` (last step first)."""
    for i in range(len(steps) - 1, -1, -1):
        name, step = steps[i]
        pulled = pullback(step, w, b)
        if pulled is None:
            rest = f"pipe[{i + 1}:]"
            if _is_extractor(step):
                raise TypeError(
                    f"{who}: Pipeline step {name!r} is a TorchFeatureExtractor (the "
                    "network up to the embeddings), which is not a linear layer. Pass "
                    f"what follows it, e.g. `{rest}` (or `pipe[-1]` for the classifier "
                    "alone), in place of the layer whose input the extractor "
                    "captures (`layer=`, by default the model's last nn.Linear)."
                )
            raise TypeError(
                f"{who}: Pipeline step {name!r} ({type(step).__name__}) is not an "
                "affine map, so the pipeline does not fold into one linear layer. "
                f"Export the part after it (`{rest}`) if that is what the layer sees. "
                "Affine steps: StandardScaler, RobustScaler, MaxAbsScaler, "
                "MinMaxScaler(clip=False), PCA, IncrementalPCA, TruncatedSVD, "
                "SpuriousProbe, 'passthrough'."
            )
        w, b = pulled
    return w, b
