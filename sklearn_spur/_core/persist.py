"""Torch parameters of estimators stored as plain arrays, for pickle and skops.

An estimator's ``head`` may be a ``torch.nn.Linear`` or a ``(W, b[, classes])``
tuple of tensors. Stored as they are, pickle embeds torch's own reduction
(code that runs on load) and :mod:`skops.io` refuses them (``Cannot directly
construct TensorBase``). :func:`encode_state` replaces each by a dict of numpy
arrays, strings and booleans (types skops trusts by default) and
:func:`decode_state` rebuilds an equal ``nn.Linear`` or tensor on load (on CPU),
so ``skops.io.get_untrusted_types`` lists only the estimator classes themselves
and nothing is unpickled. Other modules (a ``Sequential`` head) are left as
they are: pickle stores them, skops cannot; pass such a head as its
``nn.Linear`` or as ``(W, b, classes)`` arrays.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

__all__ = ["decode_state", "encode_state"]

_MARK = "__sklearn_spur_torch__"


def _encode_tensor(t):
    import torch

    dtype = str(t.dtype).removeprefix("torch.")
    data = t.detach().cpu()
    if data.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        data = data.float()
    data = data.numpy().copy()
    return {_MARK: "tensor", "data": data, "dtype": dtype,
            "requires_grad": bool(t.requires_grad),
            "parameter": isinstance(t, torch.nn.Parameter)}


def _encode(value):
    torch = sys.modules.get("torch")
    if torch is None:
        return value
    if type(value) is torch.nn.Linear:
        return {_MARK: "linear", "weight": _encode_tensor(value.weight),
                "bias": None if value.bias is None else _encode_tensor(value.bias),
                "training": bool(value.training)}
    plain = type(value) in (torch.Tensor, torch.nn.Parameter)
    if plain and value.device.type != "meta":
        return _encode_tensor(value)
    if type(value) is tuple:
        return tuple(_encode(v) for v in value)
    return value


def encode_state(state):
    """``state`` (an estimator's ``__getstate__``) with torch parameters as arrays."""
    return {k: _encode(v) for k, v in state.items()}


def _is_encoded(value, kind):
    return isinstance(value, dict) and value.get(_MARK) == kind


def _has_encoded(value):
    if type(value) is tuple:
        return any(_has_encoded(v) for v in value)
    return _is_encoded(value, "tensor") or _is_encoded(value, "linear")


def _corrupt(what):
    return ValueError(
        f"sklearn_spur: the stored torch head is corrupt ({what}); the file was not "
        "written by this package or was altered."
    )


def _decode_tensor(enc, torch):
    data = np.asarray(enc.get("data"))
    if data.dtype.kind not in "fiub":
        raise _corrupt(f"data of dtype {data.dtype}")
    if torch is None:
        return data
    dtype = getattr(torch, str(enc.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        raise _corrupt(f"dtype {enc.get('dtype')!r}")
    t = torch.as_tensor(data).to(dtype)
    if enc.get("parameter"):
        return torch.nn.Parameter(t, requires_grad=bool(enc["requires_grad"]))
    return t.requires_grad_(bool(enc["requires_grad"]))


def _decode(value, torch):
    if _is_encoded(value, "tensor"):
        return _decode_tensor(value, torch)
    if _is_encoded(value, "linear"):
        weight = _decode_tensor(value["weight"], torch)
        bias = None if value["bias"] is None else _decode_tensor(value["bias"], torch)
        if weight.ndim != 2 or (bias is not None and bias.shape != weight.shape[:1]):
            raise _corrupt(f"weight shape {tuple(weight.shape)}")
        if torch is None:
            return weight, bias
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                dtype=weight.dtype)
        layer.weight = weight
        if bias is not None:
            layer.bias = bias
        return layer.train(bool(value["training"]))
    if type(value) is tuple:
        return tuple(_decode(v, torch) for v in value)
    return value


def decode_state(state):
    """Inverse of :func:`encode_state`.

    Without torch installed, an ``nn.Linear`` comes back as a ``(W, b)`` tuple of
    arrays (the same head for every estimator of this package) and a tensor as
    an array, with a warning.
    """
    if not any(_has_encoded(v) for v in state.values()):
        return state  # nothing of torch's: torch is not imported
    try:
        import torch
    except ImportError:
        torch = None
        warnings.warn(
            "torch is not installed: the torch heads of this estimator are loaded as "
            "(W, b) numpy arrays, which it accepts as the same head.", UserWarning,
            stacklevel=3,
        )
    return {k: _decode(v, torch) for k, v in state.items()}
