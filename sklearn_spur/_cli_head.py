"""A trained last layer read from a file, for ``sklearn-spur ... --head``.

Two forms: an ``.npz`` with ``W`` (n_outputs, n_features), ``b`` (n_outputs,)
and optionally ``classes``; or a torch state dict (``.pt`` / ``.pth``) of the
last ``nn.Linear``, read with ``torch.load(weights_only=True)``, which
refuses any pickled object other than tensors and plain containers, so a
forged file cannot run code. torch is imported only for that form.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile

import numpy as np

from ._core.groups import host_array
from ._core.linear import canonical_head
from ._io import _READ_ERRORS, EmbeddingFileError, _read_member

__all__ = ["HEAD_HELP", "HeadFileError", "describe_head", "load_head"]

_TORCH_SUFFIXES = (".pt", ".pth")
#: The help of ``--head`` (evaluate and report).
HEAD_HELP = (
    "the model's trained last layer, which ERM and every method that reads a head "
    "then use: a .npz with W (n_outputs, n_features), b and optional classes, or "
    "a .pt/.pth torch state dict of the nn.Linear (weight, bias; a whole model's "
    "state dict works when it holds exactly one <name>.weight/<name>.bias pair "
    "with a 2-D weight), read with torch.load(weights_only=True). Without it, a "
    "logistic regression refitted on train stands in for it")


class HeadFileError(EmbeddingFileError):
    """A head file is missing, unreadable or not one linear layer (exit code 2)."""


def _load_npz(path):
    # The members are read as load_embeddings reads them (no pickle, no
    # trailing bytes after a forged header; the same read errors).
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise HeadFileError(f"{path}: not a .npz file (no zip archive); write it with "
                            "np.savez(path, W=W, b=b).") from None
    with zf:
        present = {m[:-4]: m for m in zf.namelist() if m.endswith(".npy")}
        missing = [k for k in ("W", "b") if k not in present]
        if missing:
            raise HeadFileError(
                f"{path}: missing key {missing[0]!r}; a head .npz holds 'W' "
                "(n_outputs, n_features), 'b' (n_outputs,) and optionally "
                f"'classes'. The file has keys {sorted(present)}.")
        try:
            arrays = {k: _read_member(zf, present[k])
                      for k in ("W", "b", "classes") if k in present}
        except _READ_ERRORS as exc:
            hint = ("; store numbers or strings, not Python objects"
                    if "allow_pickle" in str(exc) else "")
            raise HeadFileError(f"{path}: not a readable head .npz file ({exc}){hint}."
                                ) from None
    return arrays["W"], arrays["b"], arrays.get("classes")


def _linear_pair(state, path):
    """``(weight, bias)`` of the one linear layer in a state dict."""
    if "weight" in state:
        return state["weight"], state.get("bias")
    pairs = [k[: -len(".weight")] for k in state
             if isinstance(k, str) and k.endswith(".weight") and f"{k[:-7]}.bias" in state
             and getattr(state[k], "ndim", 0) == 2]
    if len(pairs) == 1:
        return state[f"{pairs[0]}.weight"], state[f"{pairs[0]}.bias"]
    keys = [str(k) for k in state][:8]
    found = (f"{len(pairs)} linear layers ({', '.join(pairs[:5])})" if pairs
             else "no 'weight' key")
    raise HeadFileError(
        f"{path}: a head state dict holds 'weight' and 'bias' (that of one "
        f"nn.Linear, torch.save(model.fc.state_dict(), path)), or exactly one "
        f"'<name>.weight' / '<name>.bias' pair of a 2-D weight; found {found} "
        f"(keys {keys}{'...' if len(state) > 8 else ''}).")


def _load_torch(path):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(exc),
                          re.DOTALL)
        detail = " ".join((found.group(1) if found else str(exc)).split())[:200]
        if "global" not in detail.lower():  # not a pickle of allowed types at all
            raise HeadFileError(f"{path}: not a readable torch file ({detail}).") from None
        raise HeadFileError(
            f"{path}: refused by torch.load(weights_only=True): the file holds "
            f"Python objects other than tensors, which could run code on loading "
            f"({detail}). Save the layer's state dict: "
            "torch.save(model.fc.state_dict(), path).") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise HeadFileError(f"{path}: not a readable torch file "
                            f"({' '.join(str(exc).split())[:300]}).") from None
    if isinstance(state, torch.nn.Module) or not hasattr(state, "keys"):
        raise HeadFileError(
            f"{path}: holds a {type(state).__name__}, not a state dict; save the "
            "last layer's: torch.save(model.fc.state_dict(), path).")
    weight, bias = _linear_pair(state, path)
    if not isinstance(weight, torch.Tensor) or not (
            bias is None or isinstance(bias, torch.Tensor)):
        raise HeadFileError(f"{path}: 'weight' and 'bias' must be tensors.")
    weight = host_array(weight)
    bias = np.zeros(weight.shape[0], weight.dtype) if bias is None else host_array(bias)
    return weight, bias, None


def load_head(path):
    """Read a last layer from ``path``: ``(W, b)`` or ``(W, b, classes)``.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` with ``W`` of shape (n_outputs, n_features), ``b`` of shape
        (n_outputs,) and optionally ``classes`` (n_outputs labels, or 2 for a
        single binary row); or ``.pt`` / ``.pth``, a torch state dict of the
        last ``nn.Linear`` (``weight``, ``bias``; a whole model's state dict
        whose only 2-D ``<name>.weight`` with a ``<name>.bias`` is that layer
        works too), loaded with ``weights_only=True``.

    Returns
    -------
    head : tuple
        ``(W, b)`` (classes ``0..n_outputs-1``; 0 and 1 for one row) or
        ``(W, b, classes)``, numpy arrays, as every estimator's ``head=`` takes.

    Raises
    ------
    HeadFileError
        A ``ValueError`` naming the file and what is wrong.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn_spur._cli_head import load_head
    >>> path = os.path.join(tempfile.mkdtemp(), "head.npz")
    >>> np.savez(path, W=np.eye(3, 4), b=np.zeros(3), classes=np.array(["a", "b", "c"]))
    >>> W, b, classes = load_head(path)
    >>> W.shape, classes.tolist()
    ((3, 4), ['a', 'b', 'c'])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise HeadFileError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise HeadFileError(f"{path}: is a directory, not a head file.")
    if path.endswith(".npz"):
        W, b, classes = _load_npz(path)
    elif path.endswith(_TORCH_SUFFIXES):
        W, b, classes = _load_torch(path)
    else:
        raise HeadFileError(
            f"{path}: expected a .npz (W, b[, classes]) or a .pt / .pth torch "
            "state dict (weight, bias).")
    W, b = np.asarray(W), np.asarray(b)
    if W.ndim != 2 or 0 in W.shape:
        raise HeadFileError(f"{path}: the head's weight must be 2-D (n_outputs, "
                            f"n_features); got shape {W.shape}.")
    if b.shape != (W.shape[0],):
        raise HeadFileError(f"{path}: the weight has {W.shape[0]} outputs but the "
                            f"bias has shape {b.shape}.")
    n_classes = 2 if W.shape[0] == 1 else W.shape[0]
    if classes is not None and (np.ndim(classes) != 1 or len(classes) != n_classes):
        raise HeadFileError(
            f"{path}: 'classes' has shape {np.shape(classes)} but the weight's "
            f"{W.shape[0]} output(s) need {n_classes} labels.")
    try:  # dtypes, finite values, distinct labels: the estimators' own checks
        canonical_head(W, b, np.arange(n_classes) if classes is None else classes,
                       who=path)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        raise HeadFileError(msg if msg.startswith(path) else f"{path}: {msg}"
                            ) from None
    return (W, b) if classes is None else (W, b, classes)


def describe_head(path, head):
    """One line naming the head in use, for the command's output."""
    if head is None:
        return "refitted logistic regression on train (no --head given)"
    W = head[0]
    classes = (head[2] if len(head) == 3
               else np.arange(2 if W.shape[0] == 1 else W.shape[0]))
    return (f"{path} (W shape {tuple(W.shape)}, {len(classes)} classes: "
            f"{np.asarray(classes).tolist()[:10]})")
