"""Hypergradient estimators: one module per method, one call shape, a registry by name."""

from .base import REGISTRY, Estimator, Hypergradient, estimate, get, register
from .drmad import DrMAD
from .first_order import FirstOrder
from .fmd import FMD
from .ift import IFTCG, IFTExact, IFTNeumann
from .one_step import OneStep
from .rmd import RMD, TruncatedRMD

__all__ = ["REGISTRY", "Estimator", "Hypergradient", "estimate", "get", "register", "RMD", "TruncatedRMD",
           "FMD", "DrMAD", "IFTNeumann", "IFTCG", "IFTExact", "OneStep", "FirstOrder"]
from .hyperdistill import HyperDistill  # noqa: E402
from .evograd import EvoGrad  # noqa: E402
__all__ += ["HyperDistill", "EvoGrad"]
