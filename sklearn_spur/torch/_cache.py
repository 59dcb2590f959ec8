"""Fingerprints of an extraction, for the opt-in embedding cache and for resuming.

A fingerprint is a SHA-256 of everything that can change the embeddings and
that can be read: the model (the code of its classes, its ``repr``, every
parameter and buffer, persistent or not), the extractor's settings, the code
and bound state of ``preprocess``, and the inputs (type, dtype, shape, bytes).
What cannot be read (a forward hook's effect, globals a forward reads) makes
the extraction uncacheable: a model with forward hooks is never cached.
"""

from __future__ import annotations

import functools
import hashlib
import types

import joblib
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._core.cache import LRUCache, update_hash

#: Size limit of the in-process embedding cache shared by all extractors
#: (``memory="auto"``); outputs larger than this are never kept.
CACHE_MAX_BYTES = 1 << 30
CACHE = LRUCache(max_bytes=CACHE_MAX_BYTES)  # read-only float32 arrays
#: Classes from these packages are not re-hashed (their code does not change
#: within a session); user classes are, so a re-run notebook cell misses.
_LIBRARY_MODULES = ("torch", "builtins", "abc", "typing", "collections")


def embeddings_for_key(key, compute):
    """The function cached on disk by ``memory=``: ``key`` is all joblib hashes."""
    return compute()


# -------------------------------------------------------------------------- code


def _update_code(h, code):
    """Bytecode, names and constants of ``code`` (not its file or line numbers)."""
    h.update(code.co_code)
    h.update(repr((code.co_name, code.co_names, code.co_varnames, code.co_freevars,
                   code.co_cellvars)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _update_code(h, const)
        else:
            h.update(repr(const).encode())


def update_class(h, cls):
    """Feed the code of ``cls`` and of its non-library bases to ``h``."""
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "") or ""
        h.update(f"{module}.{klass.__qualname__}".encode())
        if module.partition(".")[0] in _LIBRARY_MODULES:
            continue
        for name, value in sorted(vars(klass).items(), key=lambda kv: kv[0]):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            elif isinstance(value, property):
                value = value.fget
            if isinstance(value, types.FunctionType):
                h.update(name.encode())
                _update_code(h, value.__code__)


def _update_value(h, value, pins):
    """Content of ``value`` by ``joblib.hash``; its id (pinned) when it cannot."""
    try:
        h.update(joblib.hash(value).encode())
    except Exception:  # noqa: BLE001 - whatever pickling raises: use the identity
        h.update(f"id:{id(value)}".encode())
        pins.append(value)


def update_callable(h, f, pins):
    """Code and bound state of a callable: functions, partials, methods, objects.

    Functions are hashed by bytecode, defaults and closure contents, so a
    redefined function (a re-run notebook cell) gives another digest.
    """
    if isinstance(f, functools.partial):
        h.update(b"partial")
        update_callable(h, f.func, pins)
        _update_value(h, (f.args, f.keywords), pins)
    elif isinstance(f, types.MethodType):
        update_callable(h, f.__func__, pins)
        _update_value(h, f.__self__, pins)
    elif isinstance(f, types.FunctionType):
        h.update(f"{f.__module__}.{f.__qualname__}".encode())
        _update_code(h, f.__code__)
        try:
            cells = tuple(c.cell_contents for c in f.__closure__ or ())
        except ValueError:  # an empty cell
            cells = ("<empty cell>",)
        _update_value(h, (f.__defaults__, f.__kwdefaults__, cells), pins)
    else:
        update_class(h, type(f))
        _update_value(h, f, pins)


# ------------------------------------------------------------------------- model


def hooks(model):
    """Forward hooks on ``model`` or its submodules, and global ones."""
    registry = torch.nn.modules.module
    found = [*registry._global_forward_hooks.values(),
             *registry._global_forward_pre_hooks.values()]
    for m in model.modules():
        found += [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
    return found


def update_tensor(h, t):
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        update_hash(h, t.contiguous().reshape(-1).view(torch.uint8).cpu().numpy())


def update_model(h, model):
    """Class code, ``repr``, and every parameter and buffer (persistent or not)."""
    for cls in dict.fromkeys(type(m) for m in model.modules()):
        update_class(h, cls)
    h.update(repr(model).encode())
    for name, t in (*model.named_parameters(remove_duplicate=False),
                    *model.named_buffers(remove_duplicate=False)):
        h.update(name.encode())
        update_tensor(h, t)


def update_inputs(h, X):
    """Feed the content of ``X`` to ``h``; False when X holds something unhashable.

    Arrays and tensors by dtype, shape and bytes; strings and bytes by type and
    content; sequences by type, then item by item.
    """
    if torch.is_tensor(X):
        update_tensor(h, X)
    elif isinstance(X, np.ndarray) and X.dtype.kind in "biufc":
        update_hash(h, X)
    elif isinstance(X, (str, bytes)):
        b = X if isinstance(X, bytes) else X.encode("utf-8", "surrogatepass")
        h.update(b"b" if isinstance(X, bytes) else b"s")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    elif isinstance(X, (list, tuple, np.ndarray)):
        h.update(f"{type(X).__name__}{len(X)}".encode())
        return all(update_inputs(h, x) for x in X)
    else:
        return False
    return True


def fingerprint(est, model, X, *, layer, device_type, for_cache):
    """(hex digest, objects to keep alive, whether the digest is by identity).

    For the cache (``for_cache=True``), None when the embeddings cannot be
    keyed: ``Dataset``/``DataLoader`` inputs, unhashable items, forward hooks.
    For a resume record, those are hashed as far as they can be (a dataset by
    its type and length, hooks by their code).
    """
    h = hashlib.sha256()
    pins = []
    settings = (layer, est.capture, est.pooling, str(est.dtype), device_type)
    h.update(repr(settings).encode())
    update_model(h, model)
    found = hooks(model)
    if found and for_cache:
        return None, (), False
    for hook in found:
        update_callable(h, hook, pins)
    if est.preprocess is not None:
        update_callable(h, est.preprocess, pins)
    if isinstance(X, (Dataset, DataLoader)) or not update_inputs(h, X):
        if for_cache:
            return None, (), False
        h.update(f"{type(X).__qualname__}".encode())
    return h.hexdigest(), tuple(pins), bool(pins)
