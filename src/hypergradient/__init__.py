"""hypergradient: gradient-based hyperparameter optimization and meta-learning on PyTorch.

The folders are the layers (README, "Architecture"): ``core`` → ``optim``, ``linalg`` → ``estimators``,
``diagnostics`` → ``drivers`` → ``learners`` → ``testing``, ``reproduce``, ``cli``; a module imports
only from layers below its own (``tests/test_layers.py``)."""

from . import _deprecated, diagnostics, drivers, estimators, learners, linalg, optim
from .core import Cost, Data, DivergenceError, FunctionalModel, Hyper, Hypers, HyperSpec, InnerProblem, Settings, State
from .core.deprecation import renamed_attributes
from .core.version import VERSION
from .diagnostics import compare
from .drivers import run_offline, run_online
from .estimators import REGISTRY, Estimator, EstimatorState, Hypergradient, estimate

__version__ = VERSION

__all__ = ["Cost", "Data", "Hypers", "Settings", "DivergenceError", "Estimator", "EstimatorState", "FunctionalModel", "Hyper", "HyperSpec", "Hypergradient",
           "InnerProblem", "REGISTRY", "State", "compare", "estimate", "run_offline", "run_online", "diagnostics", "drivers", "estimators", "learners",
           "linalg", "optim", "__version__"]

__getattr__ = renamed_attributes(__name__, {"HyperParameters": ("HyperSpec", lambda: HyperSpec)})
