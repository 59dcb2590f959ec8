"""Plots, in scikit-learn's Display style (matplotlib is an optional dependency).

- :class:`GroupAccuracyDisplay`: accuracy per group, several models side by side
  (before/after bars).
- :class:`StrengthCurveDisplay`: worst-group and mean accuracy against an edit
  strength (or any parameter), to choose it by eye; the strength axis can be
  drawn as the bias shift ``-log(1 - strength)``.
- :class:`ConceptScoreDisplay`: histograms of concept scores per group.

Each has ``from_estimator`` / ``from_predictions`` (or ``from_search``)
constructors and a ``plot`` method; matplotlib is imported only when drawing.
Legends are placed outside the axes, so that they never hide bars or curves.
"""

from ._concepts import ConceptScoreDisplay
from ._groups import GroupAccuracyDisplay, plot_group_accuracies
from ._strength import StrengthCurveDisplay

__all__ = [
    "ConceptScoreDisplay",
    "GroupAccuracyDisplay",
    "StrengthCurveDisplay",
    "plot_group_accuracies",
]
