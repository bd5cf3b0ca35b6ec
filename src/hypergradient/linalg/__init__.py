"""Layer 2, linear solvers with one signature, ``solve(matvec, b, *, maxiter, tol, ridge) -> x``, for
implicit differentiation. Imports :mod:`hypergradient.core` only."""

from .solve import SOLVERS, cg, dense, neumann

__all__ = ["cg", "neumann", "dense", "SOLVERS"]
