"""Concept scores: histograms of the projections on a direction, per group."""

from __future__ import annotations

import numpy as np

from ._base import finish, legend_outside, new_axes

__all__ = ["ConceptScoreDisplay"]


class ConceptScoreDisplay:
    """Histograms of concept scores (projections on a concept direction) per group.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Concept score of every sample.
    y : ndarray of shape (n_samples,)
        Class labels.
    spurious : ndarray of shape (n_samples,)
        Spurious attribute.
    concept_name : str, default=None
        What the direction points to (``"s=1"``), for the x axis label.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur.plotting import ConceptScoreDisplay
    >>> disp = ConceptScoreDisplay(np.array([0., .1, 1., 1.1]), [0, 1, 0, 1], [0, 0, 1, 1])
    >>> sorted(disp.groups_)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """

    def __init__(self, scores, y, spurious, *, concept_name=None):
        self.concept_name = concept_name
        self.scores = np.asarray(scores, dtype=float)
        self.y = np.asarray(y)
        self.spurious = np.asarray(spurious)
        self.groups_ = {}
        for cls_ in np.unique(self.y):
            for val in np.unique(self.spurious):
                mask = (self.y == cls_) & (self.spurious == val)
                if mask.any():
                    self.groups_[(cls_.item(), val.item())] = self.scores[mask]

    def plot(self, ax=None, bins=30):
        """Draw one step histogram per group.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on.
        bins : int, default=30
            Histogram bins (shared by all groups).

        Returns
        -------
        self : ConceptScoreDisplay
        """
        ax, created = new_axes(ax)
        edges = np.histogram_bin_edges(self.scores, bins=bins)
        for (cls_, val), sc in self.groups_.items():
            ax.hist(sc, bins=edges, histtype="step", lw=1.5, label=f"y={cls_}, s={val}",
                    density=True)
        ax.set_xlabel("concept score" if self.concept_name is None
                      else f"concept score (towards {self.concept_name})")
        ax.set_ylabel("density")
        legend_outside(ax, title="group")
        finish(ax, created)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, probe, X, y, *, spurious, direction=0, ax=None, plot=True):
        """From a fitted :class:`~sklearn_spur.SpuriousProbe` (``concept_scores``).

        Parameters
        ----------
        probe : fitted SpuriousProbe
            Or any object with ``concept_scores(X)`` of shape (n, n_directions).
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,)
            Spurious attribute.
        direction : int, default=0
            Which direction's scores to draw.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        plot : bool, default=True
            Draw immediately.

        Returns
        -------
        display : ConceptScoreDisplay
        """
        scores = np.asarray(probe.concept_scores(X))
        scores = scores[:, direction] if scores.ndim == 2 else scores
        name = probe.concept_label(direction) if hasattr(probe, "concept_label") else None
        disp = cls(scores, y, spurious, concept_name=name)
        return disp.plot(ax=ax) if plot else disp
