"""The parts of :class:`~sklearn_spur.torch.rrclarc_net.RRClArCNet`: the penalty,
the skorch net that trains with it, and the write-back into the model.

The RR-ClArC penalty of Dreyer, Pahde et al. at a latent layer: the squared dot
product of a concept direction with the spatially averaged gradient of the
logits (summed with random signs) with respect to the layer's activations.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch import nn

from .._core.groups import host_array

__all__ = ["concept_sensitivity", "directional_logits", "replace_layers",
           "rrclarc_penalty"]


# --------------------------------------------------------------------- maths
def _spatial_mean(g):
    """``(n, C, *spatial)`` -> ``(n, C)``; ``(n, d)`` unchanged."""
    return g.flatten(2).mean(2) if g.ndim > 2 else g


def _projected_gradient(logits, A, weights, V, *, create_graph):
    """``v . mean_hw grad_A (logits . weights)`` for every direction: ``(n, D)``."""
    (g,) = torch.autograd.grad(logits, A, grad_outputs=weights,
                               create_graph=create_graph)
    return _spatial_mean(g) @ V.T


def directional_logits(logits, A, V, *, create_graph=False):
    """Per-output sensitivities ``v . mean_hw grad_A logit_k``: ``(n, K, D)``.

    One extra backward pass for all ``K`` outputs (the double-backward trick:
    the projected gradient is linear in the output weights ``w``, so its
    gradient with respect to ``w`` is the Jacobian-vector product).
    """
    w = torch.zeros_like(logits, requires_grad=True)
    proj = _projected_gradient(logits, A, w, V, create_graph=True)
    cols = [torch.autograd.grad(proj[:, d].sum(), w, create_graph=create_graph,
                                retain_graph=True)[0] for d in range(V.shape[0])]
    return torch.stack(cols, dim=2)


def rrclarc_penalty(logits, A, V, signs="random"):
    """The RR-ClArC penalty, averaged over the batch (differentiable).

    ``"random"`` (the reference's): ``(v . mean_hw grad_A (s . logits))^2`` with
    ``s`` drawn uniformly from ``{-1, +1}^K`` per sample. ``"expected"``: its
    expectation over ``s``, ``sum_k (v . mean_hw grad_A logit_k)^2``,
    deterministic. Summed over the directions (rows of ``V``).
    """
    if signs == "random":
        s = torch.randint(0, 2, logits.shape, device=logits.device)
        s = s.to(logits.dtype).mul_(2).sub_(1)
        proj = _projected_gradient(logits, A, s, V, create_graph=True)
        return proj.pow(2).sum(1).mean()
    sens = directional_logits(logits, A, V, create_graph=True)
    return sens.pow(2).sum((1, 2)).mean()


def concept_sensitivity(module, A, directions, *, batch_size=512, device="cpu"):
    """Sensitivity of every output along every concept direction, per sample.

    ``S[i, k, d] = v_d . mean_hw grad_A logit_k(A_i)``: the spatially averaged
    gradient of output ``k`` with respect to the activations, projected on the
    direction ``v_d`` (channel-wise on ``(n, C, H, W)`` maps). The quantity the
    RR-ClArC penalty drives to zero. ``module`` runs in eval mode and is
    restored afterwards.

    Parameters
    ----------
    module : torch.nn.Module
        Maps activations ``(n, C, *spatial)`` or ``(n, d)`` to logits ``(n, K)``.
    A : array-like or tensor of shape (n, C, H, W) or (n, d)
        Activations.
    directions : array-like of shape (n_directions, C)
        Concept directions (e.g. ``SpuriousProbe.directions_``).
    batch_size : int, default=512
        Samples per pass.
    device : str or torch.device, default="cpu"
        Where to compute.

    Returns
    -------
    S : ndarray of shape (n, K, n_directions), float32 or float64 (``A``'s)
    """
    A = torch.as_tensor(host_array(A) if not torch.is_tensor(A) else A)
    dtype = A.dtype if A.dtype == torch.float64 else torch.float32
    p = next(module.parameters(), None)
    device = torch.device(device)
    module_dtype = p.dtype if p is not None else dtype
    V = torch.as_tensor(np.asarray(directions), dtype=module_dtype, device=device)
    V = V.reshape(-1, V.shape[-1])
    was_training, was_device = module.training, (p.device if p is not None else None)
    module.eval().to(device)
    out = []
    try:
        for start in range(0, len(A), batch_size):
            a = A[start:start + batch_size].to(device, module_dtype).requires_grad_(True)
            with torch.enable_grad():
                out.append(directional_logits(module(a), a, V).detach())
    finally:
        module.train(was_training)
        if was_device is not None:
            module.to(was_device)
    return torch.cat(out).to("cpu", dtype).numpy()


# ------------------------------------------------------------------- skorch net
class _PenalizedNet(NeuralNetClassifier):
    """NeuralNetClassifier whose loss adds ``lam`` x the RR-ClArC penalty."""

    def __init__(self, *args, lam=0.0, directions=None, signs="random",
                 eval_modules=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.lam = lam
        self.directions = directions
        self.signs = signs
        self.eval_modules = eval_modules

    def _set_training(self, training=True):
        super()._set_training(training)
        for name in self.eval_modules:  # frozen batch norm keeps its statistics
            self.module_.get_submodule(name).eval()

    def _objective(self, batch, training):
        Xi, yi = unpack_data(batch)
        A = to_tensor(Xi, device=self.device).detach().requires_grad_(True)
        y_pred = self.infer(A)
        loss = self.get_loss(y_pred, yi, X=A, training=training)
        if self.lam > 0:
            V = self._directions_t
            loss = loss + self.lam * rrclarc_penalty(y_pred, A, V, self.signs)
        return loss, y_pred

    @property
    def _directions_t(self):
        p = next(self.module_.parameters())
        key = (p.device, p.dtype)
        cached = getattr(self, "_dir_cache", None)
        if cached is None or cached[0] != key:
            V = torch.as_tensor(self.directions, dtype=p.dtype, device=p.device)
            self._dir_cache = cached = (key, V)
        return cached[1]

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        loss, y_pred = self._objective(batch, True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        # The validation loss is the objective (cross-entropy + penalty), so that
        # early stopping does not undo the trade the penalty asks for.
        self._set_training(False)
        with torch.enable_grad():
            loss, y_pred = self._objective(batch, False)
        return {"loss": loss.detach(), "y_pred": y_pred.detach()}


# --------------------------------------------------------------- write-back
def _children(module):
    return list(module.children()) if isinstance(module, nn.Sequential) else [module]


def _names_by_identity(target, head):
    """Names in ``target`` of the modules ``head`` was built from (by identity)."""
    where = {id(m): n for n, m in target.named_modules() if n}
    parts = _children(head)
    names = [where.get(id(m)) for m in parts]
    if any(n is None for n in names):
        if id(head) in where:
            return [where[id(head)]]
        raise ValueError(
            "replace_layers: the head's layers are not submodules of this model, so "
            "their names cannot be found; pass names=, e.g. ['features.11', 'fc'], "
            "one per layer of head (an nn.Sequential), or the name of one layer that "
            "head replaces as a whole.")
    return names


def replace_layers(model, names, upper):
    """A copy of ``model`` whose upper layers are replaced by trained ones.

    Parameters
    ----------
    model : torch.nn.Module or skorch.NeuralNet
        The network; not modified (a deep copy is patched).
    names : str, list of str or None
        A list: the dotted names of the submodules that the layers of
        ``upper`` (an ``nn.Sequential``) replace, one per layer, in order. A
        string: one submodule that ``upper`` replaces as a whole. None (a
        fitted :class:`RRClArCNet` only): the submodules its ``head`` was built
        from, found by identity (``nn.Sequential(*model.features[11:],
        model.fc)`` -> ``["features.11", ..., "fc"]``).
    upper : RRClArCNet or torch.nn.Module
        A fitted estimator (its :meth:`~RRClArCNet.to_torch`) or a module.

    Returns
    -------
    patched : same type as ``model``
        Each new layer sits on the device, in the dtype and in the train/eval
        mode of the one it replaces.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_spur.torch.rrclarc_net import replace_layers
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> new = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
    >>> patched = replace_layers(model, ["1", "2"], new)
    >>> patched[2] is model[2], torch.equal(patched[2].weight, new[1].weight)
    (False, True)
    """
    target = model.module_ if hasattr(model, "module_") and hasattr(model, "initialized_") \
        else model
    if not isinstance(target, nn.Module):
        raise TypeError("replace_layers: model must be a torch.nn.Module or a fitted "
                        f"skorch NeuralNet, got {type(model).__name__}.")
    if not isinstance(upper, nn.Module) and hasattr(upper, "to_torch"):  # RRClArCNet
        if names is None:
            check_is_fitted(upper)
            names = _names_by_identity(target, upper.head)
        upper = upper.to_torch()
    elif not isinstance(upper, nn.Module):
        raise TypeError("replace_layers: upper must be a fitted RRClArCNet or a torch "
                        f"module, got {type(upper).__name__}.")
    elif names is None:
        raise ValueError("replace_layers: names=None needs a fitted RRClArCNet; with a "
                         "module, pass the submodule names it replaces.")
    if isinstance(names, str):
        names, parts = [names], [upper]
    else:
        names, parts = list(names), _children(upper)
        if len(names) != len(parts):
            raise ValueError(
                f"replace_layers: {len(names)} names for {len(parts)} layers of upper; "
                "give one name per layer of the nn.Sequential, or one name for the "
                "whole module.")
    known = dict(target.named_modules())
    unknown = [n for n in names if n not in known or not n]
    if unknown:
        raise ValueError(
            f"replace_layers: the model has no submodule {unknown}; its submodules are "
            f"{[n for n in known if n][:20]}.")
    patched = copy.deepcopy(model)
    patched_target = patched.module_ if target is not model else patched
    for name, part in zip(names, parts):
        old = known[name]
        p = next(old.parameters(), None)
        p = next(target.parameters(), None) if p is None else p
        new = copy.deepcopy(part)
        if p is not None:
            new = new.to(device=p.device, dtype=p.dtype)
        new.train(old.training)
        parent, _, child = name.rpartition(".")
        setattr(patched_target.get_submodule(parent) if parent else patched_target,
                child, new)
    return patched
