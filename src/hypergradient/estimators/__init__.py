"""Hypergradient estimators: one module per method, one call shape, a registry by name."""

from .base import REGISTRY, Estimator, Hypergradient, estimate, get, register
from .rmd import RMD, TruncatedRMD

__all__ = ["REGISTRY", "Estimator", "Hypergradient", "estimate", "get", "register", "RMD", "TruncatedRMD"]
