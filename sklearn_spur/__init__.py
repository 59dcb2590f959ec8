"""sklearn-spur: find and neutralize spurious correlations in trained classifiers.

Post-hoc methods over a frozen backbone's embeddings, with scikit-learn's API:
group metrics, DFR, concept-direction removal (SpuriousProbe, RR-ClArC),
single-weight editing, neuron tuning, and the way back into the torch model.
"""

from ._dfr import DFRClassifier, ERMClassifier
from ._editor import SingleWeightEditor, strength_grid
from ._export import replace_head, to_torch
from ._extractor import TorchFeatureExtractor
from ._io import load_embeddings, save_embeddings
from ._neurontune import (
    NeuronTuner,
    neuron_delta_scorer,
    worst_class_scorer,
)
from ._probe import RRClArCClassifier, SpuriousProbe
from .metrics import (
    group_report,
    make_worst_group_scorer,
    worst_class_accuracy,
    worst_group_accuracy,
    worst_group_scorer,
)

__version__ = "0.1.0"

__all__ = [
    "DFRClassifier",
    "ERMClassifier",
    "NeuronTuner",
    "RRClArCClassifier",
    "SingleWeightEditor",
    "SpuriousProbe",
    "TorchFeatureExtractor",
    "group_report",
    "load_embeddings",
    "make_worst_group_scorer",
    "neuron_delta_scorer",
    "replace_head",
    "save_embeddings",
    "strength_grid",
    "to_torch",
    "worst_class_accuracy",
    "worst_class_scorer",
    "worst_group_accuracy",
    "worst_group_scorer",
]
