"""What several estimators share: the adjoint padded to the state, the reverse sweep, DrMAD's
interpolated trajectory (also HyperDistill's) and the offline call of the estimators that are online
by nature (T online steps at fixed λ)."""

from __future__ import annotations

from typing import Any, Callable

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import zeros_like
from ..core.types import Hparams, Tensors
from .base import Hypergradient

__all__ = ["padded", "reverse_sweep", "Interpolated", "last_of_steps"]


def padded(alpha: Tensors, state: State) -> list:
    """The adjoint (∂L_val/∂w, 0) aligned with ``State.tensors()`` (no cotangent on optimizer state)."""
    return list(alpha) + [None] * (len(state.tensors()) - len(alpha))


def reverse_sweep(problem: InnerProblem, lam: Hparams, state_at: Callable[[int], State], T: int, K: int,
                  adjoint: Tensors) -> Hparams:
    """Σ_{t=T-K+1..T} ᾱ_t B_t by K VJPs from step T down (``g += ᾱ_t B_t; ᾱ_{t-1} = ᾱ_t A_t``);
    ``state_at(t)`` returns s_t (T and t are absolute step indices, as in ``State.t``)."""
    g = zeros_like(lam)
    cot: Tensors = adjoint
    for t in range(T, T - K, -1):
        cot, gl = problem.vjp(state_at(t - 1), lam, cot)
        for k in g:
            g[k] = g[k] + gl[k]
    return g


def last_of_steps(advance: Callable[[InnerProblem, Hparams, State, Any], tuple[Hypergradient, Any]],
                  problem: InnerProblem, lam: Hparams, state: State, carry: Any, T: int) -> Hypergradient:
    """T online steps at fixed λ from ``state``: the last hypergradient g_T, with ``info["sum"]`` =
    Σ_t g_t (what T online updates at fixed λ would apply)."""
    total = zeros_like(lam)
    hg = None
    watch = problem.watcher()
    for _ in range(T):
        hg, carry = advance(problem, lam, state, carry)
        state = hg.next_state()
        watch(state.t)
        total = {k: total[k] + hg.value[k] for k in total}
    if hg is None:
        raise ValueError(f"T must be >= 1, got {T}")
    return Hypergradient.of(hg.direct, hg.indirect, state=hg.state, val_loss=hg.val_loss,
                            info={**hg.info, "sum": total})


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
