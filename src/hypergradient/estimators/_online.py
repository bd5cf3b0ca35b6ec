"""Small helpers shared by the online estimators (fmd, ift, one_step, first_order)."""

from __future__ import annotations

from ..problem import Cost, InnerProblem
from .base import Hypergradient, check


def detached(lam) -> dict:
    """λ as the estimators use it: the driver's raw leaves, detached."""
    return {k: v.detach() for k, v in lam.items()}


def result(problem: InnerProblem, before: Cost, direct: dict, indirect: dict, info: dict, name: str) -> Hypergradient:
    """The Hypergradient of one online step: value = direct + indirect, cost since ``before``."""
    value = {k: direct[k] + indirect[k] for k in direct}
    check(value, name)
    return Hypergradient(value, direct, indirect, problem.cost - before, info)


def padded(alpha: list, state) -> list:
    """The adjoint (∂L_val/∂w, 0) aligned with ``State.tensors()`` (no cotangent on optimizer state)."""
    return list(alpha) + [None] * (len(state.tensors()) - len(alpha))
