"""Utilities: the estimator registry (:mod:`sklearn_spur.utils.discovery`)."""
