"""What several estimators share: the online result, the adjoint padded to the state, the reverse sweep
and DrMAD's interpolated trajectory (also HyperDistill's)."""

from __future__ import annotations

import torch

from ..core.problem import InnerProblem
from ..core.state import Cost, State
from ..core.tree import zeros_like
from .base import Hypergradient

__all__ = ["result", "padded", "reverse_sweep", "Interpolated"]


def result(problem: InnerProblem, before: Cost, direct: dict, indirect: dict, info: dict, name: str) -> Hypergradient:
    """The Hypergradient of one online step: value = direct + indirect, cost since ``before``.
    Non-finite values are returned as they are: the caller owns the policy (``lockstep``'s
    ``nonfinite``, an element-wise outer optimizer, or ``Estimator.__call__``'s check offline)."""
    return Hypergradient.of(direct, indirect, problem.cost - before, info)


def padded(alpha: list, state: State) -> list:
    """The adjoint (∂L_val/∂w, 0) aligned with ``State.tensors()`` (no cotangent on optimizer state)."""
    return list(alpha) + [None] * (len(state.tensors()) - len(alpha))


def reverse_sweep(problem: InnerProblem, lam, state_at, T: int, K: int, adjoint: list) -> dict:
    """Σ_{t=T-K+1..T} ᾱ_t B_t by K VJPs from step T down (``g += ᾱ_t B_t; ᾱ_{t-1} = ᾱ_t A_t``);
    ``state_at(t)`` returns s_t (T and t are absolute step indices, as in ``State.t``)."""
    g = zeros_like(lam)
    cot = adjoint
    for t in range(T, T - K, -1):
        cot, gl = problem.vjp(state_at(t - 1), lam, cot)
        for k in g:
            g[k] = g[k] + gl[k]
    return g


class Interpolated:
    """``ŝ(i)`` for absolute step indices i ∈ [s_0.t, s_T.t]: the straight line from s_0 to s_T
    (DrMAD, HyperDistill paper Algorithm 2, line 5)."""

    def __init__(self, first: State, last: State):
        self.first, self.last, self.T = first, last, last.t - first.t

    def __call__(self, i: int) -> State:
        c = (i - self.first.t) / self.T
        if c == 0:
            return self.first
        if c == 1:
            return self.last
        flat = [(1 - c) * a + c * b for a, b in zip(self.first.tensors(), self.last.tensors())]
        buffers = {k: (1 - c) * a + c * self.last.buffers[k] if a.is_floating_point() else self.last.buffers[k]
                   for k, a in self.first.buffers.items()}
        return self.last.with_tensors(flat)._replace(buffers=buffers, t=i)
