"""The input checks, probe and write-back of :class:`~sklearn_spur.RRClArCNet`."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..concepts.probe import SpuriousProbe
from ..exceptions import MissingSpuriousError
from ._rrclarc_parts import (  # noqa: F401
    _PenalizedNet,
    concept_sensitivity,
    directional_logits,
    replace_layers,
    rrclarc_penalty,
)

_FROZEN_TYPES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)


class _RRClArCNetParts:
    """Activations in, the concept directions, frozen layers, the way back."""

    def _check_A(self, A, *, reset):
        who = type(self).__name__
        if torch.is_tensor(A):
            A = A.detach().cpu().numpy()
        A = np.asarray(A)
        if A.dtype.kind not in "fiu":
            raise ValueError(f"{who}: A must hold real activations; got dtype {A.dtype}.")
        if A.ndim < 2:
            raise ValueError(
                f"{who}: A must be activations of shape (n, C, *spatial) or (n, d); got "
                f"shape {A.shape}. Reshape a single sample with A[None].")
        if A.dtype != np.float64:
            A = A.astype(np.float32, copy=False)
        if not np.isfinite(A).all():
            raise ValueError(f"{who}: A holds NaN or infinite values.")
        if reset:
            self.n_features_in_ = A.shape[1]
        elif A.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{who}: A has {A.shape[1]} channels but the estimator was fitted on "
                f"{self.n_features_in_}.")
        return A

    def _pooled(self, A):
        if A.ndim == 2:
            return A
        flat = A.reshape(A.shape[0], A.shape[1], -1)
        return flat.max(-1) if self.cav_pooling == "max" else flat.mean(-1)

    def _fitted_probe(self, A, y, s):
        probe = SpuriousProbe() if self.probe is None else self.probe
        if isinstance(probe, FrozenEstimator):
            probe = probe.estimator
        try:
            check_is_fitted(probe)
        except NotFittedError:  # unfitted: fit a clone on the pooled activations
            probe = clone(probe)
            try:
                probe.fit(self._pooled(A), y, spurious=s)
            except MissingSpuriousError:
                raise MissingSpuriousError(
                    "RRClArCNet: fitting the probe needs the spurious attribute: call "
                    "fit(A, y, spurious=s), or pass a fitted probe as `probe=` (fit it "
                    "on pooled activations, e.g. A.reshape(n, C, -1).max(-1)).") from None
        V = getattr(probe, "directions_", None)
        if V is None:
            raise TypeError("RRClArCNet: probe must be a SpuriousProbe (an object with "
                            f"`directions_` once fitted), got {type(probe).__name__}.")
        if V.shape[1] != A.shape[1]:
            raise ValueError(
                f"RRClArCNet: the probe's directions have {V.shape[1]} entries but A has "
                f"{A.shape[1]} channels. Fit the probe on activations of the same layer, "
                "pooled over space: (n, C).")
        return probe

    def _frozen(self, module):
        if isinstance(self.freeze, str):
            if self.freeze == "none":
                return [], []
            mods = [n for n, m in module.named_modules() if isinstance(m, _FROZEN_TYPES)]
            bn = [n for n, m in module.named_modules()
                  if isinstance(m, nn.modules.batchnorm._NormBase)]
        else:
            names = dict(module.named_modules())
            unknown = [n for n in self.freeze if n not in names]
            if unknown:
                raise ValueError(
                    f"RRClArCNet: freeze names {unknown} are not submodules of head; "
                    f"they are {[n for n in names if n][:20]}.")
            mods = list(self.freeze)
            bn = [n for n in mods if isinstance(names[n], nn.modules.batchnorm._NormBase)]
        params = [f"{m}.{p}" if m else p for m in mods
                  for p, _ in module.get_submodule(m).named_parameters()]
        return params, bn

    # ---------------------------------------------------------------- fit
    def concept_sensitivity(self, A):
        """``v . mean_hw grad_A logit_k`` of the trained layers, per sample.

        Parameters
        ----------
        A : array-like or tensor of shape (n_samples, C, H, W) or (n_samples, d)
            Activations.

        Returns
        -------
        S : ndarray of shape (n_samples, n_classes, n_directions)
            See :func:`concept_sensitivity`.
        """
        check_is_fitted(self)
        A = self._check_A(A, reset=False)
        return concept_sensitivity(self.net_.module_, A, self.directions_,
                                   device=self.net_.device)

    # -------------------------------------------------------- write-back
    def to_torch(self):
        """The trained layers: a deep copy of ``net_.module_``, on CPU, in eval mode.

        Returns
        -------
        module : torch.nn.Module
            Same structure as ``head``; every parameter trainable again.
        """
        check_is_fitted(self)
        module = copy.deepcopy(self.net_.module_).cpu().eval()
        for p in module.parameters():
            p.requires_grad_(True)
        return module

    def replace_into(self, model, names=None):
        """A copy of ``model`` whose upper layers are the trained ones.

        Parameters
        ----------
        model : torch.nn.Module or skorch.NeuralNet
            The network ``head`` was taken from; not modified.
        names : str, list of str or None, default=None
            See :func:`replace_layers`.

        Returns
        -------
        patched : same type as ``model``
        """
        return replace_layers(model, names, self)

