"""The way back: fitted estimators as torch modules, patched into the model."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from .._core.heads import _search_message, as_linear_head, linear_of, pullback_steps

__all__ = ["ClassOrder", "fold_into_first_linear", "replace_head", "to_torch"]


class ClassOrder(torch.nn.Module):
    """Picks the class outputs in the model's order: ``z[:, index]``.

    With ``difference=True`` the two picked outputs become one, the logit of the
    second class against the first (a single-logit binary model's output).

    Parameters
    ----------
    index : sequence of int
        Output of the preceding module for every output of this one.
    difference : bool, default=False
        Return ``z[:, index[1]] - z[:, index[0]]`` as one column.
    """

    def __init__(self, index, difference=False):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(np.asarray(index, np.int64)))
        self.difference = bool(difference)

    def forward(self, z):
        z = z[:, self.index]
        return z[:, 1:] - z[:, :1] if self.difference else z

    def extra_repr(self):
        return f"index={self.index.tolist()}, difference={self.difference}"


def _check_dtype(dtype, who):
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        dtype = getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"{who}: dtype must be a floating torch dtype such as torch.float32 or "
            f"torch.float16; got {dtype!r}."
        )
    return dtype


def _cast_checked(module, dtype, who):
    """``module`` (built in float64) cast to ``dtype``, refusing NaN and overflow.

    A bias of -inf is kept: it switches an output off (the editor's suppressed
    sub-classes at ``strength=1``).
    """
    infinite = {}
    for name, param in module.named_parameters():
        bad = torch.isnan(param) | (param == float("inf"))
        if not name.endswith("bias"):
            bad |= torch.isinf(param)
        if bad.any():
            raise ValueError(
                f"{who}: the fitted {name} holds NaN or infinite values, so there is "
                "no layer to export. Refit the estimator (check its convergence and "
                "the scale of the embeddings)."
            )
        infinite[name] = torch.isinf(param)
    module = module.to(dtype)
    for name, param in module.named_parameters():
        if not torch.equal(torch.isinf(param), infinite[name]):
            raise ValueError(
                f"{who}: the fitted {name} exceeds the range of {dtype} (float16 "
                "stops at 65504). Export with dtype=torch.float32."
            )
    return module


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
    b = (first.bias.detach().double().cpu().numpy() if first.bias is not None
         else np.zeros(w.shape[0]))
    w, b = pullback_steps(steps, w, b, who=who)
    new = _linear_module(w, b, first.weight.dtype)
    if isinstance(module, torch.nn.Linear):
        return new
    module[0] = new
    return module


def to_torch(estimator, *, dtype=None):
    """A fitted linear estimator (or Pipeline) as a torch module: embeddings to logits.

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
        Parameter dtype (floating); ``torch.float32`` by default. Weights that
        do not fit in it (beyond 65504 in float16) are refused.

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
    dtype = _check_dtype(dtype, "to_torch")
    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    message = _search_message(estimator, "to_torch")
    if message:
        raise TypeError(message)
    if isinstance(estimator, Pipeline):
        final = estimator.steps[-1][1]
        if isinstance(final, FrozenEstimator):
            final = final.estimator
        if hasattr(final, "_torch_module"):
            module = fold_into_first_linear(final._torch_module(torch.float64),
                                            estimator.steps[:-1])
            return _cast_checked(module, dtype, "to_torch")
    elif hasattr(estimator, "_torch_module"):
        return _cast_checked(estimator._torch_module(torch.float64), dtype, "to_torch")
    w, b = as_linear_head(estimator).full()
    return _cast_checked(_linear_module(w, b, torch.float64), dtype, "to_torch")


def _linear_names(model):
    names = [n for n, m in model.named_modules()
             if n and isinstance(m, torch.nn.Linear)]
    return f"{names[-10:]}" if names else "none"


def _get_submodule(model, name):
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"replace_head: name must be the dotted name of the layer to replace, e.g. "
            f"'fc' or 'classifier.3'; got {name!r}. The model's linear layers are "
            f"{_linear_names(model)}."
        )
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(
            f"replace_head: the model has no submodule {name!r}; its submodules are "
            f"{names[:20]}{' ...' if len(names) > 20 else ''}."
        ) from None


def _old_linear(target, name):
    """The nn.Linear to replace and its dotted name (inside a Sequential of one)."""
    old = _get_submodule(target, name)
    try:
        linear, index = linear_of(old, who="replace_head")
    except TypeError:
        raise TypeError(
            f"replace_head: layer {name!r} is a {type(old).__name__}, not an "
            "nn.Linear; "
            "replace_head replaces the model's linear last layer (the one whose "
            f"inputs the head was fitted on). The model's linear layers are "
            f"{_linear_names(target)}."
        ) from None
    if torch.nn.parameter.is_lazy(linear.weight):
        raise ValueError(f"replace_head: layer {name!r} is an uninitialised lazy "
                         "layer; run one forward pass of the model first.")
    if linear.weight.device.type == "meta":
        raise ValueError(f"replace_head: layer {name!r} is on the 'meta' device; load "
                         "the model's weights first.")
    return linear, name if index is None else f"{name}.{index}"


def _class_map(old, name, fitted_classes, classes):
    """Index into ``fitted_classes`` of every output of ``old`` (strict mode)."""
    n_out = old.out_features
    model_classes = np.asarray(
        np.arange(2 if n_out == 1 else n_out) if classes is None else classes)
    n_needed = 2 if n_out == 1 else n_out
    if model_classes.ndim != 1 or len(model_classes) != n_needed:
        raise ValueError(
            f"replace_head: classes must name the {n_needed} classes of layer "
            f"{name!r}'s {n_out} output(s) in order; got {model_classes.tolist()[:10]}."
        )
    fitted = np.asarray(fitted_classes)
    found = [np.flatnonzero(fitted == c) for c in model_classes]
    missing = [c for c, f in zip(model_classes.tolist(), found) if f.size == 0]
    extra = [c for c in fitted.tolist() if not np.any(model_classes == c)]
    if missing or extra or len(set(model_classes.tolist())) != n_needed:
        what = (f"layer {name!r} has {n_out} output(s) for {n_needed} classes but the "
                f"fitted estimator has {len(fitted)} classes" if len(fitted) != n_needed
                else f"the fitted estimator's classes are not those of layer {name!r}")
        hint = (" Pass classes=[label of output 0, label of output 1, ...] to say "
                "which class each output of the model is." if classes is None
                and len(fitted) == n_needed else "")
        raise ValueError(
            f"replace_head: {what}: estimator classes {fitted.tolist()[:10]}, layer "
            f"output classes {model_classes.tolist()[:10]} (missing from the "
            f"estimator: {missing[:10]}; not outputs of the layer: {extra[:10]})."
            f"{hint} Use strict=False to replace the layer anyway (output i is then "
            "the estimator's classes_[i], and the model's output count may change)."
        )
    return np.array([f[0] for f in found]), n_out == 1


def _reordered(new, index, difference):
    """``new`` with its class outputs picked (and differenced) in the model's order."""
    if isinstance(new, torch.nn.Linear):
        w, b = new.weight.detach()[index], new.bias.detach()[index]
        if difference:
            w, b = w[1:] - w[:1], b[1:] - b[:1]
        layer = torch.nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        return layer
    if not difference and (index == np.arange(len(index))).all():
        return new
    return torch.nn.Sequential(new, ClassOrder(index, difference))


def replace_head(model, name, fitted, *, classes=None, strict=True, dtype=None):
    """A copy of ``model`` whose layer ``name`` is replaced by ``fitted``'s head.

    Parameters
    ----------
    model : torch.nn.Module or skorch.NeuralNet
        The trained network. It is not modified: a deep copy is patched.
    name : str, list of str or None
        Dotted name of the last ``nn.Linear``, e.g. ``"fc"`` (ResNet) or
        ``"classifier.3"`` (a Sequential holding one Linear, with Dropout or
        Flatten, also works). Other layer types are refused. For a fitted
        :class:`~sklearn_spur.RRClArCNet` (trained upper layers), the names of
        the layers it replaces: one per layer of its ``head``, one name for the
        whole module, or None to find them by identity.
    fitted : fitted estimator
        Anything :func:`to_torch` accepts, fitted on the inputs of that layer
        (not a search: pass ``search.best_estimator_``; not a Pipeline that
        starts with the extractor: pass ``pipe[1:]``).
    classes : array-like, default=None
        The class label of each output of the layer, in output order; by default
        ``0 .. n_outputs - 1`` (for a single-logit layer, ``[0, 1]``: its output
        is the logit of 1). The new layer's outputs follow this order.
    strict : bool, default=True
        Refuse an estimator whose classes are not the layer's outputs' classes.
        With ``strict=False`` the layer becomes :func:`to_torch` of ``fitted``
        as it is: output ``i`` is the logit of ``fitted.classes_[i]``, and the
        number of outputs may change. A different input width is always refused.
    dtype : torch.dtype, default=None
        Parameter dtype of the new layer; that of the replaced layer by default.

    Returns
    -------
    patched : torch.nn.Module or skorch.NeuralNet
        Same class as ``model``; the new layer sits on the old one's device.

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
    is_skorch = hasattr(model, "module_") and hasattr(model, "initialized_")
    target = model.module_ if is_skorch else model
    if not isinstance(target, torch.nn.Module):
        raise TypeError(
            f"replace_head: model must be a torch.nn.Module or a fitted skorch "
            f"NeuralNet, got {type(model).__name__}."
        )
    from .rrclarc_net import RRClArCNet, replace_layers

    if isinstance(fitted, RRClArCNet):
        # trained upper layers: a list of names (one per layer of fitted.head),
        # one name for the whole module, or None (found by identity)
        return replace_layers(model, name, fitted)
    old, name = _old_linear(target, name)
    if not strict and classes is not None:
        raise ValueError("replace_head: classes= orders the outputs in strict mode; "
                         "with strict=False output i is fitted.classes_[i].")
    new = to_torch(fitted, dtype=dtype or old.weight.dtype)
    first = new if isinstance(new, torch.nn.Linear) else new[0]
    if old.in_features != first.in_features:
        raise ValueError(
            f"replace_head: layer {name!r} takes {old.in_features} features but the "
            f"fitted estimator takes {first.in_features}. Fit it on that layer's "
            "inputs."
        )
    if strict:
        index, difference = _class_map(old, name, fitted.classes_, classes)
        new = _reordered(new, index, difference)
    patched = copy.deepcopy(model)
    patched_target = patched.module_ if is_skorch else patched
    new = new.to(old.weight.device)
    parent_name, _, child = name.rpartition(".")
    parent = (patched_target.get_submodule(parent_name) if parent_name
              else patched_target)
    setattr(parent, child, new)
    return patched
