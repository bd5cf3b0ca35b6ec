"""Layer 6, testing: float64 reference problems with known answers, the finite-difference oracle and the
``hypergradient verify`` table. Imports every library layer below it (never reproduce or cli)."""

from .oracle import finite_differences
from .problems import linear, mlp, ridge, ridge_closed_form

__all__ = ["finite_differences", "mlp", "ridge", "ridge_closed_form", "linear"]
