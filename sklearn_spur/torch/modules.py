"""Torch modules that this package writes into a model (imported only with torch)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SubclassPooling"]


class SubclassPooling(torch.nn.Module):
    """Class pooling: ``(n, n_outputs) -> (n, n_classes)``.

    Parameters
    ----------
    output_class : sequence of int
        Class index of every sub-class output.
    """

    def __init__(self, output_class):
        super().__init__()
        output_class = np.asarray(output_class, dtype=np.int64)
        n_classes = int(output_class.max()) + 1
        width = int(np.bincount(output_class).max())
        index = np.zeros((n_classes, width), np.int64)
        valid = np.zeros((n_classes, width), bool)
        for c in range(n_classes):  # classes, not samples
            members = np.flatnonzero(output_class == c)
            index[c, :len(members)] = members
            valid[c, :len(members)] = True
        self.register_buffer("index", torch.as_tensor(index))
        self.register_buffer("valid", torch.as_tensor(valid))

    def forward(self, z):
        gathered = z[:, self.index]  # (n, n_classes, width)
        gathered = gathered.masked_fill(~self.valid, float("-inf"))
        return torch.logsumexp(gathered, dim=2)

    def extra_repr(self):
        return f"n_outputs={int(self.valid.sum())}, n_classes={self.index.shape[0]}"
