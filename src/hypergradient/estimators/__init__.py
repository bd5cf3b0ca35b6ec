"""Hypergradient estimators: one module per method, one call shape, a registry by name."""

from .base import REGISTRY, Estimator, Hypergradient, estimate, get, register
from .drmad import DrMAD
from .evograd import EvoGrad
from .first_order import FirstOrder
from .fmd import FMD
from .hyperdistill import HyperDistill
from .ift import IFTCG, IFTExact, IFTNeumann
from .one_step import OneStep
from .rmd import RMD, TruncatedRMD

__all__ = ["REGISTRY", "Estimator", "Hypergradient", "estimate", "get", "register", "RMD", "TruncatedRMD",
           "FMD", "DrMAD", "IFTNeumann", "IFTCG", "IFTExact", "OneStep", "FirstOrder", "HyperDistill", "EvoGrad"]
