"""Embeddings out of a trained torch model, as a scikit-learn transformer.

:class:`TorchFeatureExtractor` runs a frozen network over images, token ids,
strings or a torch ``Dataset`` and returns what one of its layers sees (by
default the penultimate embedding, the input of the last ``nn.Linear``), so
that the package's estimators can sit after it in a ``Pipeline``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import sys
import threading
import warnings
from collections.abc import Mapping
from numbers import Integral

import joblib
import numpy as np
import torch
from numpy.lib.format import open_memmap
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from tqdm.auto import tqdm

from .._core.cache import LRUCache, update_hash

__all__ = ["TorchFeatureExtractor"]

#: Size limit of the in-process embedding cache shared by all extractors
#: (``memory="auto"``); outputs larger than this are never kept.
CACHE_MAX_BYTES = 1 << 30

_AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
#: Seconds before the progress bar shows up (short extractions print nothing).
_PROGRESS_DELAY = 2.0


class _StopForward(Exception):
    """Raised by the capture hook once the layer's tensor is in hand."""


_CACHE = LRUCache(max_bytes=CACHE_MAX_BYTES)  # read-only float32 arrays
# Clones share their model (see `__sklearn_clone__`); runs borrow it one at a time.
_RUN_LOCK = threading.RLock()


def _embeddings_for_key(key, compute):
    """The function cached on disk by ``memory=``: ``key`` is all joblib hashes."""
    return compute()


class _MapLocationUnpickler(pickle.Unpickler):
    """Unpickle torch objects onto ``map_location`` (skorch's approach).

    Pickled tensors reload through ``torch.storage._load_from_bytes``; this
    routes that call through ``torch.load(..., map_location=...)``.
    """

    def __init__(self, file, *, map_location):
        super().__init__(file)
        self.map_location = map_location

    def find_class(self, module, name):
        if module == "torch.storage" and name == "_load_from_bytes":
            def _load_from_bytes(b):
                return torch.load(io.BytesIO(b), map_location=self.map_location,
                                  weights_only=False)
            return _load_from_bytes
        return super().find_class(module, name)


# --------------------------------------------------------------------------- helpers


def _is_strings(X):
    """A non-empty list, tuple or array of str/bytes."""
    sequence = isinstance(X, (list, tuple)) or (
        isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "OUS")
    return sequence and len(X) > 0 and all(isinstance(x, (str, bytes)) for x in X)


def _n_samples(X):
    """Number of rows the extraction will produce, or None when unknown."""
    if isinstance(X, DataLoader):
        if isinstance(X.dataset, IterableDataset) or X.batch_size is None:
            return None
        n = len(X.sampler)
        return n // X.batch_size * X.batch_size if X.drop_last else n
    if isinstance(X, IterableDataset):
        return None
    return len(X)


def _first_sample(X):
    """X restricted to its first sample, in the same form."""
    if isinstance(X, DataLoader):
        if isinstance(X.dataset, IterableDataset) or X.batch_size is None:
            return X  # the caller stops after one batch
        return DataLoader(Subset(X.dataset, [next(iter(X.sampler))]), batch_size=1,
                          collate_fn=X.collate_fn)
    if isinstance(X, IterableDataset):
        return X
    if isinstance(X, Dataset):
        return Subset(X, [0])
    return X[:1]


def _to_device(obj, device, float_dtype):
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
        return {k: _to_device(v, device, float_dtype) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)) and not _is_strings(obj):
        moved = [_to_device(v, device, float_dtype) for v in obj]
        return moved if isinstance(obj, list) else tuple(moved)
    return obj


def _call(model, inputs):
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)) and not _is_strings(inputs):
        return model(*inputs)
    return model(inputs)


def _pool(value, pooling):
    """A captured tensor as float32 ``(n, d)``: maps ``(n, c, *spatial)`` are pooled."""
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
    if value.ndim == 2:
        return value
    if pooling == "flatten":
        return value.flatten(1)
    value = value.flatten(2)
    return value.mean(2) if pooling == "avg" else value.amax(2)


def _user_stacklevel():
    """``stacklevel`` of the first caller outside this package and scikit-learn."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _top_package(frame) in {"sklearn_spur", "sklearn"}:
        frame, level = frame.f_back, level + 1
    return level


def _top_package(frame):
    return frame.f_globals.get("__name__", "").partition(".")[0]


def _describe(inputs):
    """Shape and dtype of a model input (tensor, or the tensors of a dict/list)."""
    if isinstance(inputs, torch.Tensor):
        return f"a tensor of shape {tuple(inputs.shape)}, {inputs.dtype}"
    if isinstance(inputs, dict):
        return "a dict of " + ", ".join(f"{k}: {_describe(v)}"
                                        for k, v in inputs.items())
    if isinstance(inputs, (list, tuple)) and inputs and not _is_strings(inputs):
        return f"a {type(inputs).__name__} of " + ", ".join(map(_describe, inputs))
    return f"a {type(inputs).__name__}"


def _model_devices(model):
    seen = []
    for t in (*model.parameters(), *model.buffers()):
        if t.device not in seen:
            seen.append(t.device)
    return seen


def _floating_dtype(model):
    for p in (*model.parameters(), *model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return None


def _update_tensor(h, t):
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        update_hash(h, t.contiguous().reshape(-1).view(torch.uint8).cpu().numpy())


def _update_inputs(h, X):
    """Feed the content of ``X`` to ``h``; False when X holds something unhashable.

    Arrays and tensors by dtype, shape and bytes; strings by their text;
    sequences item by item.
    """
    if torch.is_tensor(X):
        _update_tensor(h, X)
    elif isinstance(X, np.ndarray) and X.dtype.kind in "biufc":
        update_hash(h, X)
    elif isinstance(X, (str, bytes)):
        b = X if isinstance(X, bytes) else X.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    elif isinstance(X, (list, tuple, np.ndarray)):
        h.update(f"seq{len(X)}".encode())
        return all(_update_inputs(h, x) for x in X)
    else:
        return False
    return True


@contextlib.contextmanager
def _borrowed(model, device, move):
    """``model`` in eval mode on ``device``; flags and device put back on exit.

    ``.to()`` runs outside ``inference_mode`` (parameters must stay normal tensors).
    """
    flags = [(m, m.training) for m in model.modules()]
    home = _model_devices(model)[0] if move else None
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
def _capture(layer, capture):
    """Hook ``layer``; its first input/output of each forward lands in the yielded list.

    The hook raises :class:`_StopForward` right after the capture, so nothing
    after the layer runs. The hook is removed on exit, whatever happens.
    """
    captured = []

    def pre_hook(module, args, kwargs):
        captured.append(args[0] if args else next(iter(kwargs.values()), None))
        raise _StopForward

    def hook(module, args, output):
        captured.append(output)
        raise _StopForward

    handle = (layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
              if capture == "input" else layer.register_forward_hook(hook))
    try:
        yield captured
    finally:
        handle.remove()


class _Sink:
    """Receives one ``(b, d)`` float32 tensor per batch and writes it to the output.

    The output is allocated once the width ``d`` is known: a new array, the
    ``out`` array, or a ``.npy`` file opened with ``open_memmap``. From CUDA a
    batch is copied with ``non_blocking=True`` and written to the output only
    when the next batch has been launched (no sync per batch, no device memory
    growth). With an unknown number of rows, blocks are concatenated at the end.
    """

    def __init__(self, n, out):
        self.n, self.out = n, out
        self.result, self.blocks, self.pos, self.pending = None, [], 0, None

    def add(self, feats):
        if feats.device.type == "cuda":
            host = feats.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.flush()
            self.pending = (host, event)
        else:
            self.flush()
            self.write(feats.cpu().numpy())

    def flush(self):
        if self.pending is not None:
            host, event = self.pending
            self.pending = None
            event.synchronize()
            self.write(host.numpy())

    def _allocate(self, d):
        shape = (self.n, d)
        if self.out is None:
            return np.empty(shape, np.float32)
        if isinstance(self.out, np.ndarray):
            if self.out.shape != shape or self.out.dtype != np.float32:
                raise ValueError(
                    f"out has shape {self.out.shape} and dtype {self.out.dtype}; the "
                    f"extraction needs a float32 array of shape {shape}."
                )
            return self.out
        return open_memmap(os.fspath(self.out), mode="w+", dtype=np.float32,
                           shape=shape)

    def write(self, block):
        if self.n is None:
            self.blocks.append(block.copy())
            return
        if self.result is None:
            self.result = self._allocate(block.shape[1])
        end = self.pos + len(block)
        if end > self.n or block.shape[1] != self.result.shape[1]:
            raise RuntimeError(
                f"the batches gave more rows or another width than expected "
                f"({end} x {block.shape[1]} vs {self.result.shape}); every batch must "
                "give the same number of features and len(X) rows in all."
            )
        self.result[self.pos:end] = block
        self.pos = end

    def finish(self):
        self.flush()
        if self.n is None:
            return np.concatenate(self.blocks)
        if self.pos != self.n:
            raise RuntimeError(f"the inputs gave {self.pos} rows, expected {self.n}.")
        if isinstance(self.result, np.memmap):
            self.result.flush()
        return self.result


# --------------------------------------------------------------------------- estimator


class TorchFeatureExtractor(TransformerMixin, BaseEstimator):
    """Embeddings of a trained torch model at one layer, as a scikit-learn transformer.

    Runs the frozen ``model`` over the inputs in batches, in eval mode under
    ``torch.inference_mode()``, and returns the tensor that enters (or leaves)
    ``layer``, as a float32 array of shape ``(n_samples, n_features)``. The
    forward pass stops at the captured layer. The model is only borrowed: its
    training flags, device and hooks are as they were afterwards, also when a
    batch raises.

    Parameters
    ----------
    model : torch.nn.Module or skorch.NeuralNet
        The trained network; for an initialized skorch net, its ``module_``.
    layer : str, default=None
        Dotted name of the submodule to capture (``model.get_submodule(layer)``),
        e.g. ``"fc"``, ``"layer4"`` or ``"classifier.3"``; ``""`` is the model
        itself. None captures the input of the model's last ``nn.Linear`` (in
        registration order): the penultimate embedding the head sees.
    capture : {"input", "output"}, default="input"
        Capture the layer's (first positional) input or its output. A tuple or
        list is reduced to its first element.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How a captured tensor of more than 2 dimensions, channels first
        ``(n, c, *spatial)`` such as a convolutional feature map, becomes
        ``(n, d)``: mean or max over the trailing dimensions (``d = c``), or
        flattened (``d = c * h * w``).
    preprocess : callable, default=None
        Called on each batch of raw inputs (a list of strings, a slice of the
        array, a collated batch) and returns the model's inputs, e.g. a
        tokenizer. Required for strings.
    batch_size : int, default=128
        Inputs per forward pass (a given ``DataLoader`` keeps its own).
    device : str or torch.device, default="auto"
        Where the model runs. ``"auto"``: where the model already is if that is
        an accelerator, else CUDA when available, else CPU. The model is moved
        there for the extraction and moved back afterwards.
    dtype : {"float16", "bfloat16"}, torch.dtype or None, default=None
        Run under ``torch.autocast`` with this dtype; None runs the model's own
        precision. The output is float32 either way.
    num_workers : int, default=0
        Worker processes of the ``DataLoader`` built for a ``Dataset`` input.
    progress : bool, default=True
        Show a tqdm progress bar when an extraction takes more than 2 seconds.
    memory : "auto", None, str or joblib.Memory, default="auto"
        Cache of the embeddings, so that a grid search over the steps after
        this one runs the network once per distinct input set (see Notes).
        ``"auto"``: in-process, shared by all extractors. None: no caching. A
        path or a ``joblib.Memory``: on disk, shared across processes.

    Attributes
    ----------
    layer_ : str
        Name of the captured layer (the resolved default when ``layer=None``).
    n_features_out_ : int
        Number of output features.

    See Also
    --------
    sklearn_spur.DFRClassifier : Retrains the last layer on these embeddings.
    sklearn_spur.replace_head : Puts the retrained head back into the model.

    Notes
    -----
    **Inputs.** A NumPy array or tensor (sliced into batches, floating inputs cast
    to the model's floating dtype), a list of strings or other raw items with
    ``preprocess``, a ``torch.utils.data.Dataset`` (batched by a ``DataLoader``
    with ``batch_size`` and ``num_workers``) or a ``DataLoader``. A batch that
    is a tuple or list, as a ``Dataset`` of ``(x, y)`` pairs gives, contributes
    its first element. Model inputs that are dicts are passed as keyword
    arguments, ``model(**batch)``; tuples as positional arguments. When the
    first batch makes the model raise (inputs of the wrong shape or dtype),
    the error is a ``ValueError`` that describes the batch and quotes the
    model's message; embeddings with NaN or inf (from non-finite inputs) are
    returned with a ``RuntimeWarning`` that names their rows.

    **Memory.** Outputs leave the device batch by batch and are written into one
    preallocated array, or into a ``.npy`` file memory-mapped with
    ``open_memmap`` when ``transform(X, out=path)`` is given, so device memory
    does not grow with the number of samples.

    **Cache.** ``clone`` (and so ``GridSearchCV``) creates new extractors, so
    the cache cannot live on the instance: entries live in a module-level LRU
    (``memory="auto"``) or in a ``joblib.Memory``, keyed by a SHA-256 of

    - the model: its class, ``repr`` and every tensor of its ``state_dict``
      (parameters and buffers), hashed at every call, so new weights miss;
    - ``layer``, ``capture``, ``pooling``, ``dtype`` and the device type;
    - ``preprocess``: its ``joblib.hash``, or for what joblib cannot hash
      (lambdas, local functions) its ``id``, with the entry keeping the object
      alive so that the id cannot be reused;
    - the inputs: dtype, shape and bytes of arrays and tensors, text of
      strings, item by item for lists of those.

    A miss costs one SHA-256 pass over the inputs (about 1 GB/s per core, in
    parallel chunks): some 5 % of the extraction time for the tiny CNN of
    ``benchmarks/bench_extractor.py``, far less for real models; pass
    ``memory=None`` to skip it for one-off extractions. Clones share the
    model instead of deep-copying it (no copy of the weights per candidate,
    and a fitted skorch net stays fitted). Limits:

    - ``Dataset`` and ``DataLoader`` inputs, and lists holding objects other
      than arrays, tensors and strings (PIL images, ...), are never cached:
      their content is not hashed. Pass arrays to benefit.
    - The in-process cache holds at most 1 GiB (least recently used entries
      go first), keeps a private copy of each result and returns copies; larger
      results and ``transform(X, out=...)`` bypass it. Each process has its
      own: with ``n_jobs > 1`` in a search, give an on-disk ``memory`` to share
      embeddings between workers. :meth:`clear_cache` empties it.
    - A model whose forward depends on Python state that is neither in its
      ``state_dict`` nor in its ``repr`` can hit a stale entry; so can a
      ``preprocess`` hashed by ``id`` whose behaviour is changed in place. Use
      ``memory=None`` for those.

    **Pickling.** The model is stored as skorch stores its modules: an extractor
    pickled with the model on a GPU loads on a CPU-only machine, onto the CPU.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_spur import TorchFeatureExtractor
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    ...     torch.nn.Flatten(), torch.nn.Linear(8, 2))
    >>> X = np.random.default_rng(0).normal(size=(20, 3, 16, 16)).astype("float32")
    >>> extractor = TorchFeatureExtractor(net, progress=False)
    >>> Z = extractor.fit_transform(X)
    >>> Z.shape, Z.dtype, extractor.layer_
    ((20, 8), dtype('float32'), '4')
    >>> extractor.head()
    Linear(in_features=8, out_features=2, bias=True)
    >>> maps = TorchFeatureExtractor(net, layer="1", capture="output", pooling="max",
    ...                              progress=False)
    >>> maps.fit_transform(X).shape
    (20, 8)
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "layer": [str, None],
        "capture": [StrOptions({"input", "output"})],
        "pooling": [StrOptions({"avg", "max", "flatten"})],
        "preprocess": [callable, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "dtype": [StrOptions(set(_AUTOCAST_DTYPES)), torch.dtype, None],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "progress": ["boolean"],
        "memory": [None, str, HasMethods("cache")],
    }

    def __init__(self, model, layer=None, *, capture="input", pooling="avg",
                 preprocess=None, batch_size=128, device="auto", dtype=None,
                 num_workers=0, progress=True, memory="auto"):
        self.model = model
        self.layer = layer
        self.capture = capture
        self.pooling = pooling
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.num_workers = num_workers
        self.progress = progress
        self.memory = memory

    # ---------------------------------------------------------------- public API

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the model, layer and inputs; the network is run on one sample only.

        Parameters
        ----------
        X : array-like, tensor, list of str, Dataset or DataLoader
            Inputs of the model (see Notes).
        y : None
            Ignored.

        Returns
        -------
        self : TorchFeatureExtractor
        """
        X = _first_sample(self._check_inputs(X))
        self._set_fitted(self._extract(X, first_batch_only=True))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, *, out=None):
        """Embeddings of ``X`` (fitting is stateless: this is :meth:`transform`).

        Parameters
        ----------
        X : array-like, tensor, list of str, Dataset or DataLoader
            Inputs of the model (see Notes).
        y : None
            Ignored.
        out : str, path-like or ndarray, default=None
            See :meth:`transform`.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features_out_), float32
        """
        Z = self._transform(X, out)
        self._set_fitted(Z)
        return Z

    def transform(self, X, out=None):
        """Embeddings of ``X`` at the captured layer.

        Parameters
        ----------
        X : array-like, tensor, list of str, Dataset or DataLoader
            Inputs of the model (see Notes).
        out : str, path-like or ndarray, default=None
            Where to write the result, batch by batch: a ``.npy`` path (created
            with ``numpy.lib.format.open_memmap``, returned as a memmap) or a
            preallocated float32 array of shape ``(n_samples, n_features)``.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features), float32
        """
        self._validate_params()
        return self._transform(X, out)

    def get_feature_names_out(self, input_features=None):
        """Output feature names ``torchfeatureextractor0``, ``...1``, ...

        Parameters
        ----------
        input_features : None
            Ignored (the inputs are not tabular).

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "n_features_out_")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)],
                          dtype=object)

    def head(self):
        """The model's last ``nn.Linear``: the trained head on these embeddings.

        Returns
        -------
        head : torch.nn.Linear
            The module itself (not a copy), accepted as ``head=`` by the
            package's estimators.
        """
        model = self._torch_model()
        return model.get_submodule(self._default_layer(model))

    @staticmethod
    def clear_cache():
        """Empty the in-process embedding cache shared by all extractors."""
        _CACHE.clear()

    # ---------------------------------------------------------------- sklearn protocol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def __sklearn_clone__(self):
        # Clones share the (frozen, only borrowed) model instead of deep-copying
        # it: no extra copy of the weights per candidate and fold of a search.
        params = {k: clone(v, safe=False)
                  for k, v in self.get_params(deep=False).items() if k != "model"}
        return type(self)(self.model, **params)

    def __getstate__(self):
        state = super().__getstate__()
        torch_state = {k: v for k, v in state.items()
                       if isinstance(v, (torch.nn.Module, torch.Tensor))}
        if torch_state:
            state = {k: v for k, v in state.items() if k not in torch_state}
            state["_torch_state"] = pickle.dumps(torch_state)
        return state

    def __setstate__(self, state):
        blob = state.pop("_torch_state", None)
        if blob is not None:
            map_location = None if torch.cuda.is_available() else torch.device("cpu")
            state.update(_MapLocationUnpickler(io.BytesIO(blob),
                                               map_location=map_location).load())
        super().__setstate__(state)

    # ---------------------------------------------------------------- internals

    def _set_fitted(self, Z):
        self.layer_ = self._layer_name(self._torch_model())
        self.n_features_out_ = Z.shape[1]

    def _torch_model(self):
        model = self.model
        skorch = sys.modules.get("skorch")
        if skorch is not None and isinstance(model, skorch.NeuralNet):
            if not getattr(model, "initialized_", False):
                raise ValueError(
                    "TorchFeatureExtractor: the skorch net is not initialized; fit it "
                    "(or call .initialize()) first."
                )
            model = model.module_
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                "TorchFeatureExtractor: model must be a torch.nn.Module or a fitted "
                f"skorch NeuralNet, got {type(model).__name__}."
            )
        return model

    @staticmethod
    def _default_layer(model):
        linears = [n for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError(
                f"TorchFeatureExtractor: {type(model).__name__} has no nn.Linear, so "
                "there is no default layer; pass layer= (e.g. layer='', "
                "capture='output' for the model's own output)."
            )
        return linears[-1]

    def _layer_name(self, model):
        if self.layer is None:
            return self._default_layer(model)
        names = [n for n, _ in model.named_modules()]
        if self.layer not in names:
            shown = [repr(n) for n in names if n]
            raise ValueError(
                f"TorchFeatureExtractor: layer {self.layer!r} is not a submodule of "
                f"{type(model).__name__}. Available layers ({len(shown)}): "
                f"{', '.join(shown[:60])}{', ...' if len(shown) > 60 else ''}."
            )
        return self.layer

    def _device(self, model):
        """(device to run on, whether the model must be moved there)."""
        devices = _model_devices(model)
        if self.device == "auto":
            on_accelerator = [d for d in devices if d.type != "cpu"]
            if on_accelerator:
                return on_accelerator[0], False
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(self.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if len(devices) > 1:
            raise ValueError(
                f"TorchFeatureExtractor: the model spans several devices {devices}; "
                "use device='auto' to run it where it is."
            )
        return device, bool(devices) and devices[0] != device

    def _check_inputs(self, X):
        if isinstance(X, (Dataset, DataLoader)) or torch.is_tensor(X):
            return X
        if isinstance(X, (str, bytes)):
            raise TypeError("TorchFeatureExtractor: X must be a collection of inputs, "
                            "not a single string.")
        if not isinstance(X, (list, tuple, np.ndarray)):
            X = np.asarray(X)  # pandas objects, array-likes
        if _is_strings(X):
            if self.preprocess is None:
                raise ValueError(
                    "TorchFeatureExtractor: strings need preprocess= (e.g. a "
                    "tokenizer) to become model inputs."
                )
            return list(X)  # what tokenizers take
        if self.preprocess is not None and isinstance(X, (list, tuple)):
            return X  # raw items (images, ...) that preprocess turns into tensors
        X = np.asarray(X)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError(
                f"TorchFeatureExtractor: X has no samples (shape {X.shape}).")
        return X

    def _batches(self, X, device):
        """Model inputs, batch by batch, still on the host."""
        if isinstance(X, Dataset):
            X = DataLoader(X, batch_size=self.batch_size, num_workers=self.num_workers,
                           pin_memory=device.type == "cuda")
        if isinstance(X, DataLoader):
            for batch in X:
                if isinstance(batch, (tuple, list)) and not _is_strings(batch):
                    batch = batch[0]  # (inputs, targets, ...)
                yield batch if self.preprocess is None else self.preprocess(batch)
            return
        for start in range(0, len(X), self.batch_size):
            batch = X[start:start + self.batch_size]
            yield batch if self.preprocess is None else self.preprocess(batch)

    def _cache_key(self, model, X, *, on_disk):
        """(key, objects to keep alive), or (None, ()) when X cannot be hashed."""
        if isinstance(X, (Dataset, DataLoader)):
            return None, ()
        layer, (device, _) = self._layer_name(model), self._device(model)
        pins = ()
        h = hashlib.sha256()
        settings = (type(model).__module__, type(model).__qualname__, layer,
                    self.capture, self.pooling, str(self.dtype), device.type)
        h.update(repr(settings).encode())
        h.update(repr(model).encode())
        for name, t in model.state_dict().items():
            h.update(name.encode())
            _update_tensor(h, t)
        if self.preprocess is not None:
            try:
                h.update(joblib.hash(self.preprocess).encode())
            except (pickle.PicklingError, TypeError, AttributeError):
                # lambdas, local functions: identity, kept alive by the entry
                if on_disk:
                    return None, ()
                h.update(f"id:{id(self.preprocess)}".encode())
                pins = (self.preprocess,)
        if not _update_inputs(h, X):
            return None, ()
        return h.hexdigest(), pins

    def _transform(self, X, out):
        Z = self._transform_unchecked(X, out)
        bad = np.concatenate([start + np.flatnonzero(~np.isfinite(Z[start:start + 65536]
                                                                 ).all(axis=1))
                              for start in range(0, len(Z), 65536)] or [[]])
        if len(bad):
            warnings.warn(
                f"TorchFeatureExtractor: {len(bad)} of {len(Z)} embeddings contain NaN "
                f"or inf (rows {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}); "
                "the inputs there are probably not finite. Estimators reject "
                "non-finite embeddings.", RuntimeWarning, stacklevel=_user_stacklevel())
        return Z

    def _transform_unchecked(self, X, out):
        X = self._check_inputs(X)
        in_process = isinstance(self.memory, str) and self.memory == "auto"
        if self.memory is None or (in_process and out is not None):
            return self._extract(X, out=out)
        key, pins = self._cache_key(self._torch_model(), X, on_disk=not in_process)
        if key is None:
            return self._extract(X, out=out)
        if in_process:
            Z = _CACHE.get(key)
            if Z is None:
                Z = self._extract(X)
                if Z.nbytes <= CACHE_MAX_BYTES:
                    frozen = np.array(Z, dtype=np.float32)  # a private, in-memory copy
                    frozen.flags.writeable = False
                    _CACHE.put(key, frozen, nbytes=frozen.nbytes, pins=pins)
                return Z
            return np.array(Z)  # the cached array stays private
        Z = check_memory(self.memory).cache(_embeddings_for_key, ignore=["compute"])(
            key, lambda: self._extract(X))
        if out is None:
            return Z
        sink = _Sink(len(Z), out)
        sink.write(Z)
        return sink.finish()

    def _extract(self, X, *, out=None, first_batch_only=False):
        """Run the model over (checked) X; returns the float32 (n, d) array."""
        model = self._torch_model()
        layer = self._layer_name(model)
        device, move = self._device(model)
        dtype = _AUTOCAST_DTYPES.get(self.dtype, self.dtype)
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        float_dtype = _floating_dtype(model)
        n = None if first_batch_only else _n_samples(X)
        if out is not None and n is None:
            raise ValueError(
                "TorchFeatureExtractor: out= needs inputs of known length.")
        sink = _Sink(n, out)
        with (_RUN_LOCK, _borrowed(model, device, move),
              _capture(model.get_submodule(layer), self.capture) as captured,
              tqdm(total=n, unit="sample", desc=type(self).__name__, leave=False,
                   delay=_PROGRESS_DELAY, disable=not self.progress) as bar):
            for i, batch in enumerate(self._batches(X, device)):
                inputs = _to_device(batch, device, float_dtype)
                with autocast:
                    try:
                        _call(model, inputs)
                    except _StopForward:
                        pass
                    except (RuntimeError, ValueError, TypeError) as exc:
                        if i or isinstance(exc, torch.cuda.OutOfMemoryError):
                            raise
                        raise ValueError(
                            "TorchFeatureExtractor: the model failed on the first batch "
                            f"of X ({_describe(inputs)}); does X have the shape, dtype "
                            "and form the model expects (see `preprocess`)? The "
                            f"model said: {exc}"
                        ) from exc
                if not captured:
                    raise RuntimeError(
                        f"TorchFeatureExtractor: layer {layer!r} was not called during "
                        "the model's forward pass."
                    )
                feats = _pool(captured[0], self.pooling)
                captured.clear()
                sink.add(feats)
                bar.update(feats.shape[0])
                if first_batch_only:
                    break
            return sink.finish()
