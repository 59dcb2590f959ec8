"""sklearn-spur: find and neutralize spurious correlations in trained classifiers.

Post-hoc methods over a frozen backbone's embeddings, with scikit-learn's API:
group metrics, DFR, concept-direction removal (SpuriousProbe, RR-ClArC),
single-weight editing, neuron tuning, and the way back into the torch model.

Layout: :mod:`sklearn_spur.methods` (one module per last-layer estimator),
:mod:`sklearn_spur.concepts` (concept directions), :mod:`sklearn_spur.torch`
(extractor and export; the only part that imports torch, and only when one of
its names is first used), :mod:`sklearn_spur.metrics`, and a private core
(``sklearn_spur._core``: groups, heads, solver, selection, template, cache).
"""

import importlib

from ._io import load_embeddings, save_embeddings
from .concepts import (
    GroupInferrer,
    SpuriousProbe,
    infer_groups,
    make_inferred_group_scorer,
)
from . import methods
from .methods import *  # noqa: F403 (every method, found by the package)
from .metrics import (
    group_report,
    make_worst_group_scorer,
    worst_class_accuracy,
    worst_group_accuracy,
    worst_group_scorer,
)
from .diagnosis import Diagnosis, diagnose

__version__ = "0.1.0"

# Names whose import needs torch: resolved on first access (PEP 562), so that
# `import sklearn_spur` on precomputed embeddings never loads torch.
_TORCH_NAMES = {
    "TorchFeatureExtractor": "sklearn_spur.torch.extractor",
    "RRClArCNet": "sklearn_spur.torch.rrclarc_net",
    "extract_sharded": "sklearn_spur.torch.sharded",
    "replace_head": "sklearn_spur.torch.export",
    "to_torch": "sklearn_spur.torch.export",
}


def __getattr__(name):
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    if name in ("torch", "datasets", "plotting", "cli", "utils"):
        return importlib.import_module(f"sklearn_spur.{name}")
    raise AttributeError(f"module 'sklearn_spur' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_TORCH_NAMES])


__all__ = sorted([
    *methods.__all__,
    "Diagnosis",
    "GroupInferrer",
    "RRClArCNet",
    "SpuriousProbe",
    "TorchFeatureExtractor",
    "diagnose",
    "extract_sharded",
    "group_report",
    "infer_groups",
    "load_embeddings",
    "make_inferred_group_scorer",
    "make_worst_group_scorer",
    "replace_head",
    "save_embeddings",
    "to_torch",
    "worst_class_accuracy",
    "worst_group_accuracy",
    "worst_group_scorer",
])
