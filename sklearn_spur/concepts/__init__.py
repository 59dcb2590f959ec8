"""Concepts: spurious directions in embedding space, their removal, inferred groups."""

from .inference import GroupInferrer, infer_groups, make_inferred_group_scorer
from .probe import SpuriousProbe

__all__ = ["GroupInferrer", "SpuriousProbe", "infer_groups",
           "make_inferred_group_scorer"]
