"""Last-layer methods: one module per estimator, each a small subclass of the template.

The template (:class:`sklearn_spur._core.template.LastLayerClassifier`) owns
``fit``; every module here states only its refit problem.
"""

from .dfr import DFRClassifier
from .editor import SingleWeightEditor, strength_grid
from .erm import ERMClassifier
from .neurontune import NeuronTuner, neuron_delta_scorer, worst_class_scorer
from .rrclarc import RRClArCClassifier

__all__ = [
    "DFRClassifier",
    "ERMClassifier",
    "NeuronTuner",
    "RRClArCClassifier",
    "SingleWeightEditor",
    "neuron_delta_scorer",
    "strength_grid",
    "worst_class_scorer",
]
