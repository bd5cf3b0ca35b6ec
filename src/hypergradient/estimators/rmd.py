"""Exact reverse-mode hypergradient (RMD; HyperDistill paper Algorithm 1) and truncated RMD(K).

Walk back from T with the adjoint ᾱ_T = (∂L_val/∂w_T, 0):  ``g += ᾱ_t B_t;  ᾱ_{t-1} = ᾱ_t A_t``, one
VJP of Φ per step (ALGORITHMS.md §1). Storage policies, all giving the same answer:

* ``graph``       autograd keeps the whole unrolled graph (fastest; memory O(T · activations));
* ``recompute``   keep s_0 … s_{T-1} only and recompute each step's VJP (memory O(T · |s|));
* ``checkpoint``  keep every k-th state and replay each segment of k steps on the way back
                  (memory O((T/k + k) · |s|), about one extra forward pass).

Truncated RMD(K) (Shaban et al. 2019) stops after K backward steps; K = 1 is 1-step lookahead.
"""

from __future__ import annotations

import math

import torch

from ..problem import InnerProblem, State
from .base import Estimator, register

STORAGE = ("graph", "recompute", "checkpoint")


class Replay:
    """s_t on demand from checkpoints: replays the segment [c, c + k) that holds t without a graph."""

    def __init__(self, problem: InnerProblem, lam, checkpoints: dict[int, State], k: int):
        self.problem, self.lam, self.checkpoints, self.k = problem, lam, checkpoints, k
        self.segment: dict[int, State] = {}

    def __call__(self, t: int) -> State:
        if t in self.checkpoints:
            return self.checkpoints[t]
        if t not in self.segment:
            c = max(c for c in self.checkpoints if c <= t)
            self.segment = {}
            s = self.checkpoints[c]
            while s.t < t:
                s = self.problem.step(s, self.lam)
                self.segment[s.t] = s
        return self.segment[t]


def reverse_sweep(problem: InnerProblem, lam, state_at, T: int, K: int, adjoint: list):
    """Σ_{t=T-K+1..T} ᾱ_t B_t by K VJPs from step T down; ``state_at(t)`` returns s_t (T and t are
    absolute step indices, as in ``State.t``)."""
    g = {k: torch.zeros_like(v) for k, v in lam.items()}
    cot = adjoint
    for t in range(T, T - K, -1):
        cot, gl = problem.vjp(state_at(t - 1), lam, cot)
        for k in g:
            g[k] = g[k] + gl[k]
    return g


def unrolled(problem: InnerProblem, lam, state: State, T: int, K: int):
    """The ``graph`` policy: T − K steps without a graph, K with it, one backward pass.
    Returns (direct, indirect, val loss, s_T)."""
    state, _ = problem.run(state, lam, T - K)
    lam_g = {k: v.detach().requires_grad_() for k, v in lam.items()}
    s = state.detach()
    with torch.enable_grad():
        for _ in range(K):
            s = problem.step(s, lam_g, create_graph=True)
        loss, alpha, direct = problem.val_grad(s, lam)
        outs = [(p, a) for p, a in zip(s.params, alpha) if p.requires_grad]
        g = torch.autograd.grad([o for o, _ in outs], list(lam_g.values()), [a for _, a in outs],
                                allow_unused=True, materialize_grads=True) if outs else \
            [torch.zeros_like(v) for v in lam_g.values()]
    return direct, dict(zip(lam, g)), loss, s.detach()


def stored(problem: InnerProblem, lam, state: State, T: int, K: int, every: int):
    """The ``recompute`` (every = 1) and ``checkpoint`` policies over the last K steps."""
    end = state.t + T  # absolute index of the last step (the start state may have t > 0)
    first = end - K    # states s_first .. s_{end-1} are needed on the way back
    state, kept = problem.run(state, lam, T, keep=lambda t: first <= t < end and (t - first) % every == 0)
    loss, alpha, direct = problem.val_grad(state, lam)
    replay = Replay(problem, lam, kept, every)
    nstate = len(state.tensors())
    indirect = reverse_sweep(problem, lam, replay, end, K, alpha + [None] * (nstate - len(alpha)))
    held = sum(s.nbytes() for s in kept.values()) + min(every, K) * state.nbytes()
    return direct, indirect, loss, state, held


class _Reverse(Estimator):
    exact = True
    memory = "graph: O(T·activations); recompute: O(T·|s|); checkpoint(k): O((T/k + k)·|s|)"

    def __init__(self, storage: str = "graph", every: int | None = None, K: int | None = None):
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
        if every is not None and storage != "checkpoint":
            raise ValueError("every=k applies to storage='checkpoint'")
        super().__init__(storage=storage, every=every, K=K)
        self.storage, self.every, self.K = storage, every, K

    def estimate(self, problem, lam, T, state):
        K = T if self.K is None else min(self.K, T)
        if K < 1:
            raise ValueError(f"K must be >= 1, got {self.K}")
        if self.storage == "graph":
            direct, indirect, loss, final = unrolled(problem, lam, state, T, K)
            held = None
        else:
            every = 1 if self.storage == "recompute" else (self.every or max(1, round(math.sqrt(K))))
            direct, indirect, loss, final, held = stored(problem, lam, state, T, K, every)
        return direct, indirect, {"val_loss": loss, "state": final, "K": K, "stored_bytes": held}


@register
class RMD(_Reverse):
    """Exact reverse mode through all T steps. ``storage``: graph | recompute | checkpoint
    (``every=k``, default ⌈√T⌋)."""

    name = "rmd"

    def __init__(self, storage: str = "graph", every: int | None = None):
        super().__init__(storage, every)


@register
class TruncatedRMD(_Reverse):
    """Reverse mode through the last K steps only (Shaban et al. 2019); exact when K = T."""

    name = "truncated_rmd"
    exact = False

    def __init__(self, K: int = 1, storage: str = "graph", every: int | None = None):
        if not isinstance(K, int) or K < 1:
            raise ValueError(f"K must be a positive int, got {K!r}")
        super().__init__(storage, every, K)
