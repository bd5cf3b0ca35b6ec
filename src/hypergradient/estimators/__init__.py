"""Layer 3, hypergradient estimators: one module per method, one call shape, one result type, a registry
by name. Imports :mod:`hypergradient.core` and :mod:`hypergradient.linalg` (never drivers or above)."""

from .base import ALIASES, REGISTRY, Estimator, Hypergradient, estimate, get, register, register_alias
from .drmad import DrMAD
from .evograd import EvoGrad
from .first_order import FirstOrder
from .fmd import FMD
from .hyperdistill import HyperDistill
from .ift import IFT
from .one_step import OneStep
from .rmd import RMD, TruncatedRMD

__all__ = ["REGISTRY", "ALIASES", "Estimator", "Hypergradient", "estimate", "get", "register", "register_alias",
           "RMD", "TruncatedRMD", "FMD", "DrMAD", "IFT", "OneStep", "FirstOrder", "HyperDistill", "EvoGrad"]


def __getattr__(name):
    solver = {"IFTCG": "cg", "IFTNeumann": "neumann", "IFTExact": "dense"}.get(name)
    if solver is not None:
        import functools
        import warnings
        warnings.warn(f"{name} is now IFT(solver={solver!r}); the old name goes in 0.3", DeprecationWarning,
                      stacklevel=2)
        return functools.partial(IFT, solver=solver)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
