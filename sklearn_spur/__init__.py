"""sklearn-spur: find and neutralize spurious correlations in trained classifiers.

Post-hoc methods over a frozen backbone's embeddings, with scikit-learn's API:
group metrics, DFR, concept-direction removal (SpuriousProbe, RR-ClArC),
single-weight editing, neuron tuning, and the way back into the torch model.
"""

from ._dfr import DFRClassifier, ERMClassifier
from ._export import replace_head, to_torch
from ._io import load_embeddings, save_embeddings
from .metrics import (
    group_report,
    make_worst_group_scorer,
    worst_group_accuracy,
    worst_group_scorer,
)

__version__ = "0.1.0"

__all__ = [
    "DFRClassifier",
    "ERMClassifier",
    "group_report",
    "load_embeddings",
    "make_worst_group_scorer",
    "replace_head",
    "save_embeddings",
    "to_torch",
    "worst_group_accuracy",
    "worst_group_scorer",
]
