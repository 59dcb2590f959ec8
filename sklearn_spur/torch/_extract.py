"""One extraction of :class:`TorchFeatureExtractor`: model, layer, device, cache, output.

Functions of the estimator (``est``): they read its parameters and hold no
state; the estimator module keeps the public API and the scikit-learn protocol.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_memory
from torch.utils.data import DataLoader

from .._core.progress import progress_bar
from . import _cache, _runtime, sharded
from ._files import NpyFileSink, Sink, check_out
from ._runtime import _AUTOCAST_DTYPES, _RUN_LOCK, _StopForward


def torch_model(est):
    model = est.model
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


def default_layer(model):
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(
            f"TorchFeatureExtractor: {type(model).__name__} has no nn.Linear, so "
            "there is no default layer; pass layer= (e.g. layer='', "
            "capture='output' for the model's own output)."
        )
    return linears[-1]


def layer_name(est, model):
    if est.layer is None:
        return default_layer(model)
    names = [n for n, _ in model.named_modules()]
    if est.layer not in names:
        shown = [repr(n) for n in names if n]
        raise ValueError(
            f"TorchFeatureExtractor: layer {est.layer!r} is not a submodule of "
            f"{type(model).__name__}. Available layers ({len(shown)}): "
            f"{', '.join(shown[:60])}{', ...' if len(shown) > 60 else ''}."
        )
    return est.layer


def device_for(est, model):
    """(device to run on, whether the model must be moved there)."""
    devices = _runtime.model_devices(model)
    if est.device == "auto":
        on_accelerator = [d for d in devices if d.type != "cpu"]
        if on_accelerator:
            return on_accelerator[0], False
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(est.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if len(devices) > 1:
        raise ValueError(
            f"TorchFeatureExtractor: the model spans several devices {devices}; "
            "use device='auto' to run it where it is."
        )
    return device, bool(devices) and devices[0] != device


def transform(est, X, out, *, overwrite=False, resume=False, shard=None):
    """Embeddings of ``X``, through the cache and into ``out``; warns on NaN rows."""
    X = _runtime.check_inputs(X, est.preprocess)
    shard = sharded.check_shard(shard, out)
    out = check_out(out, overwrite=overwrite, resume=resume, shard=shard)
    if shard is not None:
        Z = _shard(est, X, out, shard, resume)
    else:
        Z = _cached(est, X, out, resume)
    bad = _nonfinite_rows(Z)
    if len(bad):
        warnings.warn(
            f"TorchFeatureExtractor: {len(bad)} of {len(Z)} embeddings contain NaN "
            f"or inf (rows {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}); "
            "the inputs there are probably not finite. Estimators reject "
            "non-finite embeddings.", RuntimeWarning,
            stacklevel=_runtime.user_stacklevel())
    return Z


def _nonfinite_rows(Z):
    """Rows of Z with a NaN or inf, read in blocks.

    The pages of a memory-mapped result are dropped from this process after
    each block (the page cache keeps them): checking a file must not make the
    extraction's resident memory grow with its size.
    """
    mm = getattr(Z, "_mmap", None)
    drop = getattr(mm, "madvise", None) if hasattr(mmap, "MADV_DONTNEED") else None
    found = [np.empty(0, np.intp)]
    row_bytes = max(1, Z.itemsize * int(np.prod(Z.shape[1:], dtype=np.int64)))
    step = max(1, (8 << 20) // row_bytes)  # ~8 MiB per block
    for start in range(0, len(Z), step):
        block = np.asarray(Z[start:start + step])
        found.append(start + np.flatnonzero(
            ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)))
        if drop is not None:
            drop(mmap.MADV_DONTNEED)
    return np.concatenate(found)


def _sink(est, model, X, out, resume):
    n = _runtime.n_samples(X)
    if out is not None and n is None:
        raise ValueError("TorchFeatureExtractor: out= needs inputs of known length "
                         "(not an IterableDataset).")
    if isinstance(out, str):
        digest, _, _ = _cache.fingerprint(
            est, model, X, layer=layer_name(est, model),
            device_type=device_for(est, model)[0].type, for_cache=False)
        batch_size = X.batch_size if isinstance(X, DataLoader) else est.batch_size
        return NpyFileSink(n, out, fingerprint=digest, batch_size=batch_size,
                           resume=resume)
    return Sink(n, out)


def _shard(est, X, out, shard, resume):
    """Shard ``i`` of ``k`` of ``X`` into the shared ``out`` file (no cache)."""
    model = torch_model(est)
    n = _runtime.n_samples(X)
    if n is None:
        raise ValueError("TorchFeatureExtractor: shard= needs inputs of known length "
                         "(not an IterableDataset).")
    digest, _, _ = _cache.fingerprint(
        est, model, X, layer=layer_name(est, model),
        device_type=device_for(est, model)[0].type, for_cache=False)
    batch_size = X.batch_size if isinstance(X, DataLoader) else est.batch_size
    sink = sharded.ShardFileSink(n, out, shard=shard, fingerprint=digest,
                                 batch_size=batch_size, resume=resume)
    return extract(est, sharded.shard_inputs(X, sink.offset, sink.n), sink)


def _cached(est, X, out, resume):
    model = torch_model(est)
    in_process = isinstance(est.memory, str) and est.memory == "auto"
    key = None
    if est.memory is not None:
        key, pins, by_id = _cache.fingerprint(
            est, model, X, layer=layer_name(est, model),
            device_type=device_for(est, model)[0].type, for_cache=True)
        if by_id and not in_process:
            key = None  # an id means nothing on disk
    if key is None:
        return extract(est, X, _sink(est, model, X, out, resume))
    shared = in_process and (Z := _cache.CACHE.get(key)) is not None
    if in_process and not shared:
        Z = extract(est, X, Sink(_runtime.n_samples(X)))
        if Z.nbytes <= _cache.CACHE_MAX_BYTES:
            frozen = np.array(Z, dtype=np.float32)  # a private, in-memory copy
            frozen.flags.writeable = False
            _cache.CACHE.put(key, frozen, nbytes=frozen.nbytes, pins=pins)
    elif not in_process:
        Z = check_memory(est.memory).cache(
            _cache.embeddings_for_key, ignore=["compute"])(
            key, lambda: extract(est, X, Sink(_runtime.n_samples(X))))
    if out is None:
        return np.array(Z) if shared else Z  # the cached array stays private
    sink = _sink(est, model, X, out, resume)
    sink.write(np.asarray(Z[sink.pos:]))
    return sink.finish()


def extract(est, X, sink, *, first_batch_only=False):
    """Run the model over (checked) X into ``sink``; returns the float32 (n, d) array."""
    model = torch_model(est)
    layer = layer_name(est, model)
    device, move = device_for(est, model)
    dtype = _AUTOCAST_DTYPES.get(est.dtype, est.dtype)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    float_dtype = _runtime.floating_dtype(model)
    module = model.get_submodule(layer)
    channels_last = isinstance(module, _runtime._CHANNELS_LAST)
    start = sink.pos - sink.offset  # rows of X (a shard's X starts at its offset)
    n = None if sink.n is None else sink.n - sink.offset
    try:
        with (_RUN_LOCK, _runtime.borrowed(model, device, move),
              _runtime.capture(module, est.capture) as captured,
              progress_bar(est.progress, total=n, initial=start, unit="sample",
                           desc="TorchFeatureExtractor", leave=False,
                           delay=_runtime._PROGRESS_DELAY) as bar):
            for i, batch in enumerate(_runtime.batches(
                    X, batch_size=est.batch_size, num_workers=est.num_workers,
                    preprocess=est.preprocess, device=device, start=start)):
                inputs = _runtime.to_device(batch, device, float_dtype)
                with autocast:
                    try:
                        _runtime.call(model, inputs)
                    except _StopForward:
                        pass
                    except (RuntimeError, ValueError, TypeError) as exc:
                        if i or start or isinstance(exc, torch.cuda.OutOfMemoryError):
                            raise
                        raise ValueError(
                            "TorchFeatureExtractor: the model failed on the first batch "
                            f"of X ({_runtime.describe(inputs)}); does X have the "
                            "shape, dtype and form the model expects (see "
                            f"`preprocess`)? The model said: {exc}") from exc
                if not captured:
                    raise RuntimeError(
                        f"TorchFeatureExtractor: layer {layer!r} was not called during "
                        "the model's forward pass."
                    )
                feats = _runtime.pool(captured[0], est.pooling, channels_last)
                captured.clear()
                m = _runtime.batch_len(inputs)
                if m is not None and feats.shape[0] != m:
                    raise ValueError(
                        f"TorchFeatureExtractor: layer {layer!r} gave "
                        f"{feats.shape[0]} rows for a batch of {m} inputs: the first "
                        "axis of what it sees is not the batch (a sequence-first "
                        "layer, or a DataLoader with batch_size=None giving single "
                        "samples?). Capture a batch-first layer, or batch the inputs.")
                sink.add(feats)
                bar.update(feats.shape[0])
                if first_batch_only:
                    break
            return sink.finish()
    except BaseException:
        sink.abort()
        raise
