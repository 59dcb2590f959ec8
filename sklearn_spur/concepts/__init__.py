"""Concepts: directions of the spurious attribute in embedding space, and their removal."""

from .probe import SpuriousProbe

__all__ = ["SpuriousProbe"]
