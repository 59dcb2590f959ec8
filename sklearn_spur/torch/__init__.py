"""The torch side: embeddings from a model, and the fitted heads written back into it.

Importing this subpackage imports torch; the rest of :mod:`sklearn_spur` does not.
"""

from .export import replace_head, to_torch
from .extractor import TorchFeatureExtractor
from .modules import SubclassPooling

__all__ = ["SubclassPooling", "TorchFeatureExtractor", "replace_head", "to_torch"]
