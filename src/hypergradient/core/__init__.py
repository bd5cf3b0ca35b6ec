"""Layer 1, the core: any nn.Module as a pure function, λ and its specification, the state and cost,
the inner problem (built from Hypers, Data, Settings) with Φ and its primitives, the flat layout, the optimizer protocol and its registry.
Imports torch only (no other layer of hypergradient)."""

from .functional import Forward, FunctionalModel
from .hyper import Hyper, HyperSpec, HyperView
from .inputs import Data, HparamsView, Hypers, Settings
from .optimizer import OPTIMIZERS, Optimizer, get_optimizer, register_optimizer
from .problem import InnerProblem
from .state import Cost, DivergenceError, State

__all__ = ["Forward", "FunctionalModel", "Hyper", "HyperSpec", "HyperView", "Hypers", "Data", "Settings",
           "HparamsView", "Optimizer", "OPTIMIZERS",
           "get_optimizer", "register_optimizer", "InnerProblem", "Cost", "DivergenceError", "State"]
