"""How :class:`TorchFeatureExtractor` runs a model: inputs, batches, devices, hooks.

Everything here is about one extraction: checking and batching the inputs,
borrowing the model (eval mode, device) and putting it back, capturing one
layer with a hook that stops the forward pass, and pooling what it captured.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
)

_AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
#: Seconds before the progress bar shows up (short extractions print nothing).
_PROGRESS_DELAY = 2.0
# Clones share their model (see `__sklearn_clone__`); runs borrow it one at a time.
_RUN_LOCK = threading.RLock()
#: Layers whose tensors keep their features last, ``(n, *positions, d)``.
_CHANNELS_LAST = (torch.nn.Linear, torch.nn.Bilinear, torch.nn.LayerNorm,
                  torch.nn.Embedding, torch.nn.TransformerEncoderLayer,
                  torch.nn.TransformerDecoderLayer, torch.nn.MultiheadAttention)


class _StopForward(Exception):
    """Raised by the capture hook once the layer's tensor is in hand."""


# ------------------------------------------------------------------------- inputs


def _is_strings(X):
    """A non-empty list, tuple or array of str/bytes."""
    sequence = isinstance(X, (list, tuple)) or (
        isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "OUS")
    return sequence and len(X) > 0 and all(isinstance(x, (str, bytes)) for x in X)


def check_loader(loader):
    """Refuse a DataLoader whose batches are not the dataset's samples in order."""
    if isinstance(loader.dataset, IterableDataset):
        return  # the dataset defines the order
    sampler = loader.batch_sampler
    if sampler is None:  # batch_size=None: the sampler gives the samples one by one
        sampler = loader.sampler
        ordered = type(sampler) is SequentialSampler
    else:
        ordered = (type(sampler) is BatchSampler
                   and type(sampler.sampler) is SequentialSampler)
    if not ordered:
        inner = getattr(sampler, "sampler", sampler)
        what = type(inner if type(sampler) is BatchSampler else sampler).__name__
        raise ValueError(
            f"TorchFeatureExtractor: the DataLoader draws samples with a {what}, so "
            "the embeddings would come back in another order than the dataset's "
            "(and its labels). Pass DataLoader(dataset, shuffle=False) without a "
            "sampler, or the dataset itself.")
    if loader.batch_size and loader.drop_last and \
            len(loader.dataset) % loader.batch_size:
        raise ValueError(
            f"TorchFeatureExtractor: the DataLoader has drop_last=True, which would "
            f"leave out the last {len(loader.dataset) % loader.batch_size} samples. "
            "Pass DataLoader(dataset, drop_last=False).")


class _IndexedSequence(Dataset):
    """A map-style view of an object with ``__len__`` and ``__getitem__`` only."""

    def __init__(self, seq):
        self.seq = seq

    def __len__(self):
        return len(self.seq)

    def __getitem__(self, i):
        return self.seq[i]


def check_inputs(X, preprocess):
    """X in a form :func:`batches` takes; clear errors for what it cannot."""
    if isinstance(X, DataLoader):
        check_loader(X)
        return X
    if isinstance(X, Dataset) or torch.is_tensor(X):
        return X
    if isinstance(X, (str, bytes)):
        raise TypeError("TorchFeatureExtractor: X must be a collection of inputs, "
                        "not a single string.")
    if not isinstance(X, (list, tuple, np.ndarray)):
        if not hasattr(X, "__len__") or isinstance(X, (set, frozenset, Mapping)):
            raise TypeError(
                f"TorchFeatureExtractor: X is a {type(X).__name__}, which has no "
                "order or length; pass a list, an array, a tensor or a Dataset.")
        if not hasattr(X, "__array__") and not hasattr(type(X), "__iter__"):
            # A sequence by __len__/__getitem__ alone: iterating it only stops
            # at an IndexError, which such objects may never raise. Index it.
            return _IndexedSequence(X)
        X = np.asarray(X)  # pandas objects, array-likes
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 1 and \
            _is_strings(X[:, 0]):
        X = X[:, 0]  # one column of text (a DataFrame with one column)
    if _is_strings(X):
        if preprocess is None:
            raise ValueError(
                "TorchFeatureExtractor: strings need preprocess= (e.g. a "
                "tokenizer) to become model inputs."
            )
        return list(X)  # what tokenizers take
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and X.ndim > 1 and \
            X.size and isinstance(X.flat[0], (str, bytes)):
        raise ValueError(
            f"TorchFeatureExtractor: X holds strings in {X.shape[1]} columns; pass "
            "one column of text (e.g. df['text']).")
    if preprocess is not None and isinstance(X, (list, tuple)):
        return X  # raw items (images, ...) that preprocess turns into tensors
    try:
        X = np.asarray(X)
    except ValueError as exc:
        raise ValueError(
            "TorchFeatureExtractor: X cannot be stacked into one array (inputs of "
            "different shapes?); pass preprocess= to turn each batch of raw items "
            f"into model inputs. numpy said: {exc}") from None
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(
            f"TorchFeatureExtractor: X has no samples (shape {X.shape}).")
    return X


def n_samples(X):
    """Number of rows the extraction will produce, or None when unknown."""
    if isinstance(X, DataLoader):
        if isinstance(X.dataset, IterableDataset) or X.batch_size is None:
            return None
        return len(X.dataset)
    if isinstance(X, IterableDataset):
        return None
    return len(X)


def first_sample(X):
    """X restricted to its first sample, in the same form."""
    if isinstance(X, DataLoader):
        if isinstance(X.dataset, IterableDataset) or X.batch_size is None:
            return X  # the caller stops after one batch
        return DataLoader(Subset(X.dataset, [0]), batch_size=1,
                          collate_fn=X.collate_fn)
    if isinstance(X, IterableDataset):
        return X
    if isinstance(X, Dataset):
        return Subset(X, [0])
    return X[:1]


def batches(X, *, batch_size, num_workers, preprocess, device, start=0):
    """Model inputs, batch by batch from row ``start``, still on the host.

    ``start`` is a multiple of the batch size, so the batches are those of a
    run from the beginning (a resumed extraction is bitwise the same).
    """
    if isinstance(X, DataLoader) and start:
        X = DataLoader(Subset(X.dataset, range(start, len(X.dataset))),
                       batch_size=X.batch_size, collate_fn=X.collate_fn,
                       num_workers=X.num_workers, pin_memory=X.pin_memory,
                       worker_init_fn=X.worker_init_fn)
    elif isinstance(X, Dataset) and not isinstance(X, IterableDataset) and start:
        X = Subset(X, range(start, len(X)))
    if isinstance(X, Dataset):
        X = DataLoader(X, batch_size=batch_size, num_workers=num_workers,
                       pin_memory=device.type == "cuda")
    if isinstance(X, DataLoader):
        for batch in X:
            if isinstance(batch, (tuple, list)) and not _is_strings(batch):
                batch = batch[0]  # (inputs, targets, ...)
            yield batch if preprocess is None else preprocess(batch)
        return
    for lo in range(start, len(X), batch_size):
        batch = X[lo:lo + batch_size]
        yield batch if preprocess is None else preprocess(batch)


def to_device(obj, device, float_dtype):
    """Move a batch (tensor, array, or nested dict/tuple/list of them) to ``device``."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
        if not obj.flags.writeable:  # a read-only memmap: torch wants to own a copy
            obj = np.array(obj)
        obj = torch.from_numpy(obj)
    if torch.is_tensor(obj):
        dtype = float_dtype if obj.is_floating_point() else None
        if device.type == "cuda" and obj.device.type == "cpu":
            obj = obj.pin_memory()
        return obj.to(device=device, dtype=dtype, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, float_dtype) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)) and not _is_strings(obj):
        moved = [to_device(v, device, float_dtype) for v in obj]
        return moved if isinstance(obj, list) else tuple(moved)
    return obj


def call(model, inputs):
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)) and not _is_strings(inputs):
        return model(*inputs)
    return model(inputs)


def batch_len(inputs):
    """Number of samples in a batch of model inputs, or None when it cannot be told."""
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return inputs.shape[0] if inputs.ndim else None
    if _is_strings(inputs):
        return len(inputs)
    values = (list(inputs.values()) if isinstance(inputs, Mapping)
              else inputs if isinstance(inputs, (list, tuple)) else [])
    return next((n for n in map(batch_len, values) if n is not None), None)


def describe(inputs):
    """Shape and dtype of a model input (tensor, or the tensors of a dict/list)."""
    if isinstance(inputs, torch.Tensor):
        return f"a tensor of shape {tuple(inputs.shape)}, {inputs.dtype}"
    if isinstance(inputs, dict):
        return "a dict of " + ", ".join(f"{k}: {describe(v)}"
                                        for k, v in inputs.items())
    if isinstance(inputs, (list, tuple)) and inputs and not _is_strings(inputs):
        return f"a {type(inputs).__name__} of " + ", ".join(map(describe, inputs))
    return f"a {type(inputs).__name__}"


# ------------------------------------------------------------------- model, layer


def model_devices(model):
    seen = []
    for t in (*model.parameters(), *model.buffers()):
        if t.device not in seen:
            seen.append(t.device)
    return seen


def floating_dtype(model):
    for p in (*model.parameters(), *model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return None


@contextlib.contextmanager
def borrowed(model, device, move):
    """``model`` in eval mode on ``device``; flags and device put back on exit.

    ``.to()`` runs outside ``inference_mode`` (parameters must stay normal tensors).
    """
    flags = [(m, m.training) for m in model.modules()]
    home = model_devices(model)[0] if move else None
    try:
        if move:
            model.to(device)
        model.eval()
        with torch.inference_mode():
            yield
    finally:
        for m, training in flags:
            m.training = training
        if move:
            model.to(home)


@contextlib.contextmanager
def capture(layer, what):
    """Hook ``layer``; its first input/output of each forward lands in the yielded list.

    The hook raises :class:`_StopForward` right after the capture, so nothing
    after the layer runs. The hook is removed on exit, whatever happens.
    """
    captured = []

    def pre_hook(module, args, kwargs):
        if not args and len(kwargs) != 1:
            raise ValueError(
                f"TorchFeatureExtractor: the captured layer is called with keyword "
                f"arguments only ({', '.join(kwargs)}), so its 'input' is ambiguous; "
                "use capture='output', or capture a layer called with a positional "
                "input.")
        captured.append(args[0] if args else next(iter(kwargs.values())))
        raise _StopForward

    def hook(module, args, output):
        captured.append(output)
        raise _StopForward

    handle = (layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
              if what == "input" else layer.register_forward_hook(hook))
    try:
        yield captured
    finally:
        handle.remove()


def pool(value, pooling, channels_last=False):
    """A captured tensor as float32 ``(n, d)``; higher-rank tensors are pooled.

    ``pooling=None`` keeps every axis: ``(n, c, *spatial)`` comes back as it is.

    Maps are ``(n, c, *spatial)`` (channels first), or ``(n, *positions, d)``
    when ``channels_last`` (the input or output of an ``nn.Linear``, a
    ``LayerNorm``, an ``Embedding``, a transformer layer): the features are
    kept and the other axes pooled.
    """
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not torch.is_tensor(value):
        raise TypeError(
            f"the captured value is a {type(value).__name__}, not a tensor. Capture a "
            "layer whose input/output is a tensor, or wrap the model in a module "
            "whose forward returns the tensor you want (and use layer='', "
            "capture='output')."
        )
    value = value.float()
    if value.ndim == 1:
        return value[:, None]
    if value.ndim == 2 or pooling is None:  # None: maps keep their spatial axes
        return value
    if pooling == "flatten":
        return value.flatten(1)
    if channels_last:
        value = value.movedim(-1, 1)
    value = value.flatten(2)
    return value.mean(2) if pooling == "avg" else value.amax(2)


def user_stacklevel():
    """``stacklevel`` of the first caller outside this package and scikit-learn."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] \
            in {"sklearn_spur", "sklearn"}:
        frame, level = frame.f_back, level + 1
    return level
