"""Embeddings out of a trained torch model, as a scikit-learn transformer.

:class:`TorchFeatureExtractor` runs a frozen network over images, token ids,
strings or a torch ``Dataset`` and returns what one of its layers sees (by
default the penultimate embedding, the input of the last ``nn.Linear``), so
that the package's estimators can sit after it in a ``Pipeline``. The work is
done in ``_runtime`` (inputs, batches, devices, hooks), ``_extract`` (one
extraction), ``_files`` (``out=`` files), ``_cache`` (fingerprints, cache) and
``_persist`` (pickle and skops).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _cache, _extract, _runtime
from ._files import Sink
from ._persist import ModelRef

__all__ = ["TorchFeatureExtractor"]


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
    pooling : {"avg", "max", "flatten"} or None, default="avg"
        How a captured tensor of more than 2 dimensions becomes ``(n, d)``:
        mean or max over the positions, or flattened. Maps are channels first,
        ``(n, c, *spatial)`` (``d = c``), except at an ``nn.Linear``,
        ``LayerNorm``, ``Embedding`` or transformer layer, whose tensors are
        ``(n, *positions, d)``: there the last axis is kept. ``None`` keeps the
        tensor as it is, ``(n, c, *spatial)`` (the input of
        :class:`~sklearn_spur.RRClArCNet`); ``n_features_out_`` is then ``c`` and
        there are no feature names.
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
        precision. The output is float32 either way (float16, bfloat16 and
        float64 models and inputs included).
    num_workers : int, default=0
        Worker processes of the ``DataLoader`` built for a ``Dataset`` input.
    progress : bool, default=True
        Show a tqdm progress bar when an extraction takes more than 2 seconds.
    memory : None, "auto", str or joblib.Memory, default=None
        Cache of the embeddings, so that a grid search over the steps after
        this one runs the network once per distinct input set. None: no cache.
        ``"auto"``: in-process, shared by all extractors. A path or a
        ``joblib.Memory``: on disk, shared across processes. Off by default;
        see Notes for why and for what the key covers.

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
    sklearn_spur.load_embeddings : Reads the files ``transform(X, out=...)`` writes.

    Notes
    -----
    **Inputs.** A NumPy array, DataFrame or tensor (sliced into batches,
    floating inputs cast to the model's floating dtype), a list of strings (or a
    one-column DataFrame of them) or other raw items with ``preprocess``, a
    ``torch.utils.data.Dataset`` (batched by a ``DataLoader`` with
    ``batch_size`` and ``num_workers``) or a ``DataLoader``. A ``DataLoader``
    must give the samples in order: one that shuffles, has a sampler, or drops
    its last batch is refused, since its embeddings would no longer match the
    labels. A batch that is a tuple or list, as a ``Dataset`` of ``(x, y)``
    pairs gives, contributes its first element. Dict model inputs are passed
    as ``model(**batch)``, tuples as positional arguments. When the first
    batch makes the model raise, the error is a ``ValueError`` that describes
    the batch and quotes the model; embeddings with NaN or inf are returned
    with a ``RuntimeWarning`` naming their rows.

    **Memory and files.** Outputs leave the device batch by batch into one
    preallocated array, or with ``transform(X, out="emb.npy")`` into a
    memory-mapped ``.npy`` file, so memory does not grow with the number of
    samples. The file is written as ``emb.npy.partial`` with a completeness
    record beside it and renamed when complete: an interrupted run never leaves
    a file that :func:`~sklearn_spur.load_embeddings` (or ``np.load``) takes
    for complete, and ``resume=True`` finishes it, bitwise equal to an
    uninterrupted run. An existing file is replaced only with
    ``overwrite=True``.

    **Cache.** Off by default, as scikit-learn's ``Pipeline(memory=None)``. A
    cache can only key on what it can read, and a stale embedding is a silent
    wrong answer. With ``memory`` set, the key is a SHA-256 of the code of the
    model's classes (their bytecode: a class redefined in a re-run notebook
    cell misses), its ``repr`` and every parameter and buffer, persistent or
    not; ``layer``, ``capture``, ``pooling``, ``dtype`` and the device type;
    the code, defaults, closure contents and bound state of ``preprocess``
    (what cannot be hashed by its ``id``, kept alive by the entry, and then
    not on disk); and the inputs (type, dtype, shape and bytes; ``"abc"`` and
    ``b"abc"`` differ). Never cached: models with forward hooks (a hook is
    code whose effect cannot be hashed), ``Dataset`` and ``DataLoader``
    inputs, lists of other objects (PIL images...). Still unseen by the key:
    globals that a forward or ``preprocess`` reads, and the state of objects a
    ``preprocess`` bound by ``id`` changes in place; use ``memory=None`` when
    those change. The in-process cache holds at most 1 GiB, keeps a private
    copy and returns copies; each process has its own (with ``n_jobs > 1``,
    give an on-disk ``memory``). :meth:`clear_cache` empties it. Clones share
    the model instead of deep-copying it.

    **Persistence.** pickle and joblib store the model by the ordinary pickle
    protocol (so cloudpickle, hence ``n_jobs > 1``, carries models whose class
    is defined in a script or notebook), and **loading a pickle runs code**:
    load only files you trust. A model pickled on a GPU loads on a CPU-only
    machine, onto the CPU. skops refuses the extractor, since an ``nn.Module``
    cannot be rebuilt without its class's code: store
    ``model.state_dict()`` with ``torch.save``, and rebuild the model and the
    extractor, loading the weights with ``torch.load(..., weights_only=True)``.

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
        "pooling": [StrOptions({"avg", "max", "flatten"}), None],
        "preprocess": [callable, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "dtype": [StrOptions(set(_runtime._AUTOCAST_DTYPES)), torch.dtype, None],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "progress": ["boolean"],
        "memory": [None, str, HasMethods("cache")],
    }

    def __init__(self, model, layer=None, *, capture="input", pooling="avg",
                 preprocess=None, batch_size=128, device="auto", dtype=None,
                 num_workers=0, progress=True, memory=None):
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
        X = _runtime.first_sample(_runtime.check_inputs(X, self.preprocess))
        self._set_fitted(_extract.extract(self, X, Sink(None), first_batch_only=True))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, *, out=None, overwrite=False, resume=False):
        """Embeddings of ``X`` (fitting is stateless: this is :meth:`transform`).

        Parameters
        ----------
        X : array-like, tensor, list of str, Dataset or DataLoader
            Inputs of the model (see Notes).
        y : None
            Ignored.
        out, overwrite, resume
            See :meth:`transform`.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features_out_), float32
        """
        Z = _extract.transform(self, X, out, overwrite=overwrite, resume=resume)
        self._set_fitted(Z)
        return Z

    def transform(self, X, out=None, *, overwrite=False, resume=False, shard=None):
        """Embeddings of ``X`` at the captured layer.

        Parameters
        ----------
        X : array-like, tensor, list of str, Dataset or DataLoader
            Inputs of the model (see Notes).
        out : str, path-like or ndarray, default=None
            Where to write the result, batch by batch: a ``.npy`` path (written
            as ``out + ".partial"``, renamed when complete and returned as a
            read-only memmap; ``.npz`` and other suffixes are refused), or a
            preallocated writable float32 array of shape
            ``(n_samples, n_features)``, returned filled.
        overwrite : bool, default=False
            Replace an existing ``out`` file (it stays as it was until the new
            one is complete), and discard an unfinished one. Without it, both
            are refused.
        resume : bool, default=False
            Finish an interrupted ``transform(X, out=path)``: the batches its
            completeness record lists as written are skipped. The model, the
            settings, the inputs and ``batch_size`` must be those of the
            interrupted run (checked by fingerprint; a ``Dataset`` only by
            length); the result is then bitwise equal to an uninterrupted run.
        shard : (int, int), default=None
            ``(i, k)``: compute only shard ``i`` of ``k`` (a contiguous range of
            whole batches) and write it into its rows of ``out``, a ``.npy``
            path shared by the ``k`` shards (processes or hosts; see
            :func:`~sklearn_spur.extract_sharded`). The first shard creates
            ``out + ".partial"``, each records its own progress, and the last
            one to complete renames the file to ``out``. Returns this shard's
            rows only (a read-only memmap). The in-memory or on-disk cache
            (``memory``) is not used.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features), float32
            With ``shard``, only the shard's rows.
        """
        self._validate_params()
        if hasattr(self, "layer_"):
            layer = _extract.layer_name(self, _extract.torch_model(self))
            if layer != self.layer_:
                raise ValueError(
                    f"TorchFeatureExtractor: fitted on layer {self.layer_!r}, but the "
                    f"parameters now capture {layer!r}; fit again after set_params "
                    "(fit runs one sample).")
        Z = _extract.transform(self, X, out, overwrite=overwrite, resume=resume,
                               shard=shard)
        if hasattr(self, "n_features_out_") and Z.shape[1] != self.n_features_out_:
            raise ValueError(
                f"TorchFeatureExtractor: fitted with {self.n_features_out_} output "
                f"features, but the parameters now give {Z.shape[1]} (capture or "
                "pooling changed); fit again after set_params.")
        return Z

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
        if self.pooling is None:
            raise ValueError(
                "TorchFeatureExtractor: pooling=None keeps the maps' spatial axes, so "
                "the output has no flat feature names; pool ('avg', 'max', 'flatten') "
                "for a 2-D output.")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)],
                          dtype=object)

    def head(self):
        """The model's last ``nn.Linear``: the trained head on these embeddings.

        Returns
        -------
        head : torch.nn.Linear
            The module itself (not a copy), accepted as ``head=`` by the
            package's estimators. Refused when the extractor captures something
            else than that layer's input (another ``layer``, or
            ``capture="output"``): the head would not match the embeddings.
        """
        model = _extract.torch_model(self)
        last = _extract.default_layer(model)
        layer = _extract.layer_name(self, model)
        if layer != last or self.capture != "input":
            raise ValueError(
                f"TorchFeatureExtractor: head() is the model's last nn.Linear "
                f"({last!r}), whose input is not what this extractor captures "
                f"(the {self.capture} of {layer!r}); use layer=None, capture='input' "
                "for its embeddings, or fit a new head on these.")
        return model.get_submodule(last)

    @staticmethod
    def clear_cache():
        """Empty the in-process embedding cache shared by all extractors."""
        _cache.CACHE.clear()

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
        state = dict(super().__getstate__())  # a copy: never touch __dict__
        if "model" in state:
            state["model"] = ModelRef(state["model"])
        return state

    def __setstate__(self, state):
        if "_torch_state" in state or isinstance(state.get("model"), ModelRef):
            raise ValueError(
                "TorchFeatureExtractor: this state holds a pickled byte string (a "
                "file from an older sklearn-spur, or a forged one); it is not "
                "unpickled, since that could run any code. Rebuild the extractor "
                "from the model.")
        super().__setstate__(state)

    # ---------------------------------------------------------------- internals

    def _set_fitted(self, Z):
        self.layer_ = _extract.layer_name(self, _extract.torch_model(self))
        self.n_features_out_ = Z.shape[1]
