"""Layer 3, hypergradient estimators: one module per method, one call shape, one result type, a registry
by name. Imports :mod:`hypergradient.core` and :mod:`hypergradient.linalg` (never drivers or above)."""

import functools
from typing import Callable

from ..core.deprecation import renamed_attributes
from .base import (ALIASES, REGISTRY, Carry, Estimator, EstimatorState, Hypergradient, OnlineEstimator, estimate, get,
                   register, register_alias, resolve, validate)
from .drmad import DrMAD
from .es import ES
from .evograd import EvoGrad
from .first_order import FirstOrder
from .fmd import FMD
from .hyperdistill import HyperDistill
from .ift import IFT
from .one_step import OneStep
from .pes import PES
from .online_rmd import OnlineRMD
from .rmd import RMD, TruncatedRMD
from .sama import SAMA

__all__ = ["REGISTRY", "ALIASES", "Estimator", "EstimatorState", "Carry", "OnlineEstimator", "Hypergradient",
           "estimate", "get", "resolve", "validate", "register", "register_alias",
           "RMD", "TruncatedRMD", "OnlineRMD", "FMD", "ES", "PES", "SAMA", "DrMAD", "IFT", "OneStep", "FirstOrder", "HyperDistill", "EvoGrad"]

def _ift_with(solver: str) -> Callable[[], object]:
    return lambda: functools.partial(IFT, solver=solver)


__getattr__ = renamed_attributes(__name__, {
    old: (f"IFT(solver={solver!r})", _ift_with(solver))
    for old, solver in (("IFTCG", "cg"), ("IFTNeumann", "neumann"), ("IFTExact", "dense"))})
