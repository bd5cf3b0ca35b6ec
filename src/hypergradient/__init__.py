"""hypergradient: gradient-based hyperparameter optimization and meta-learning on PyTorch."""

from . import diagnostics, drivers, estimators, linalg, optim
from .estimators import REGISTRY, Estimator, Hypergradient, estimate
from .functional import FunctionalModel
from .hparams import Hyper, HyperParameters
from .problem import Cost, DivergenceError, InnerProblem, State

__version__ = "0.1.0"

__all__ = ["Cost", "DivergenceError", "Estimator", "FunctionalModel", "Hyper", "HyperParameters",
           "Hypergradient", "InnerProblem", "REGISTRY", "State", "estimate", "diagnostics", "drivers", "estimators",
           "linalg", "optim", "__version__"]
