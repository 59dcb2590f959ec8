"""The way back: fitted estimators as torch modules, patched into the model."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from .._core.heads import as_linear_head, pullback_steps

__all__ = ["to_torch", "replace_head", "fold_into_first_linear"]


def _linear_module(w, b, dtype):
    w, b = np.asarray(w), np.asarray(b)
    layer = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w, dtype=dtype))
        layer.bias.copy_(torch.tensor(b, dtype=dtype))
    return layer


def fold_into_first_linear(module, steps, *, who="to_torch"):
    """Fold the affine Pipeline ``steps`` into the first ``nn.Linear`` of ``module``."""
    first = module if isinstance(module, torch.nn.Linear) else module[0]
    w = first.weight.detach().double().cpu().numpy()
    b = first.bias.detach().double().cpu().numpy()
    w, b = pullback_steps(steps, w, b, who=who)
    new = _linear_module(w, b, first.weight.dtype)
    if isinstance(module, torch.nn.Linear):
        return new
    module[0] = new
    return module


def to_torch(estimator, *, dtype=None):
    """A fitted linear estimator (or Pipeline) as a torch module from embeddings to logits.

    Parameters
    ----------
    estimator : fitted estimator
        A linear classifier of this package or of scikit-learn, a
        ``FrozenEstimator`` around one, or a Pipeline of affine steps
        (StandardScaler, PCA, :class:`~sklearn_spur.SpuriousProbe`) ending in a
        classifier; the affine steps are folded into the layer's weights.
        Estimators whose head is not a single linear layer
        (:class:`~sklearn_spur.SingleWeightEditor`) give their own module, with
        the affine steps folded into its first layer.
    dtype : torch.dtype, default=None
        Parameter dtype; ``torch.float32`` by default.

    Returns
    -------
    module : torch.nn.Module
        Maps ``(n, n_features)`` embeddings to ``(n, n_classes)`` logits, one per
        class in ``estimator.classes_`` order (2 outputs for 2 classes), a drop-in
        replacement for the model's last ``nn.Linear``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur import to_torch
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = (X[:, 0] > 0).astype(int)
    >>> lr = LogisticRegression().fit(X, y)
    >>> layer = to_torch(lr)
    >>> layer
    Linear(in_features=3, out_features=2, bias=True)
    >>> bool((layer(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
    ...       == lr.predict(X)).all())
    True
    """
    dtype = torch.float32 if dtype is None else dtype
    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    if isinstance(estimator, Pipeline):
        final = estimator.steps[-1][1]
        if isinstance(final, FrozenEstimator):
            final = final.estimator
        if hasattr(final, "_torch_module"):
            return fold_into_first_linear(final._torch_module(dtype), estimator.steps[:-1])
    elif hasattr(estimator, "_torch_module"):
        return estimator._torch_module(dtype)
    w, b = as_linear_head(estimator).full()
    return _linear_module(w, b, dtype)


def _get_submodule(model, name):
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(
            f"replace_head: the model has no submodule {name!r}; its submodules are "
            f"{names[:20]}{' ...' if len(names) > 20 else ''}."
        ) from None


def replace_head(model, name, fitted, *, dtype=None):
    """A copy of ``model`` whose layer ``name`` is replaced by ``fitted``'s head.

    Parameters
    ----------
    model : torch.nn.Module or skorch.NeuralNet
        The trained network. It is not modified: a deep copy is patched.
    name : str
        Dotted name of the last layer, e.g. ``"fc"`` (ResNet) or
        ``"classifier.3"``.
    fitted : fitted estimator
        Anything :func:`to_torch` accepts, fitted on the inputs of that layer.
    dtype : torch.dtype, default=None
        Parameter dtype of the new layer; that of the replaced layer by default.

    Returns
    -------
    patched : torch.nn.Module or skorch.NeuralNet
        Same class as ``model``; the new layer sits on the old one's device.
        Output ``i`` is the logit of ``fitted.classes_[i]``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_spur import replace_head
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
    ...                           torch.nn.Linear(3, 2))
    >>> Z = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    >>> lr = LogisticRegression().fit(Z, (Z[:, 0] > 0).astype(int))
    >>> patched = replace_head(net, "2", lr)
    >>> patched[2] is net[2]
    False
    """
    target = model.module_ if hasattr(model, "module_") and hasattr(model, "initialized_") else model
    if not isinstance(target, torch.nn.Module):
        raise TypeError(
            f"replace_head: model must be a torch.nn.Module or a fitted skorch "
            f"NeuralNet, got {type(model).__name__}."
        )
    old = _get_submodule(target, name)
    param = next(old.parameters(), None)
    new = to_torch(fitted, dtype=dtype or (param.dtype if param is not None else None))
    in_old = getattr(old, "in_features", None)
    first = new if isinstance(new, torch.nn.Linear) else new[0]
    if in_old is not None and in_old != first.in_features:
        raise ValueError(
            f"replace_head: layer {name!r} takes {in_old} features but the fitted "
            f"estimator takes {first.in_features}. Fit it on that layer's inputs."
        )
    patched = copy.deepcopy(model)
    patched_target = patched.module_ if patched is not model and target is not model else patched
    if param is not None:
        new = new.to(param.device)
    parent_name, _, child = name.rpartition(".")
    parent = patched_target.get_submodule(parent_name) if parent_name else patched_target
    setattr(parent, child, new)
    return patched
