"""Exact reverse-mode hypergradient (RMD; HyperDistill paper Algorithm 1) and truncated RMD(K).

Walk back from T with the adjoint ᾱ_T = (∂L_val/∂w_T, 0):  ``g += ᾱ_t B_t;  ᾱ_{t-1} = ᾱ_t A_t``, one
VJP of Φ per step (ALGORITHMS.md §1). Storage policies, all giving the same answer:

* ``graph``       autograd keeps the whole unrolled graph (fastest; memory O(T · activations));
* ``recompute``   keep s_0 … s_{T-1} only and recompute each step's VJP (memory O(T · |s|));
* ``checkpoint``  keep every k-th state; on the way back replay each segment of k steps with a graph
                  and backpropagate through it at once (memory O(T/k · |s| + k · activations),
                  the time of ``graph`` plus one forward pass without a graph).

Truncated RMD(K) (Shaban et al. 2019) stops after K backward steps; K = 1 is 1-step lookahead.
"""

from __future__ import annotations

import math
from typing import cast

import torch

from ..core.autograd import grad_or_zero
from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import detached, zeros_like
from ..core.types import Hparams, Tensors
from .base import Estimator, EstimatorState, Hypergradient, register
from .shared import padded

STORAGE = ("graph", "recompute", "checkpoint")


def unrolled(problem: InnerProblem, lam: Hparams, state: State, T: int, K: int,
             wrt_init: bool = False) -> tuple[Hparams, Hparams, State, torch.Tensor, list[torch.Tensor] | None]:
    """The ``graph`` policy: T − K steps without a graph, K with it, one backward pass.
    Returns (direct, indirect, s_T, val loss, dL_val/dw at s_{T−K} when ``wrt_init``)."""
    state, _ = problem.run(state, lam, T - K)
    lam_g = detached(lam, requires_grad=True)
    start = state.detach(requires_grad=wrt_init)
    n = len(start.params) if wrt_init else 0
    with torch.enable_grad():
        s = problem.unroll(start, lam_g, K)
        loss, alpha, direct = problem.val_grad(s, lam)
        g = grad_or_zero(s.params, list(start.params[:n]) + list(lam_g.values()), alpha)
    return direct, dict(zip(lam, g[n:])), s.detach(), loss, (list(g[:n]) if wrt_init else None)


def segment_sweep(problem: InnerProblem, lam: Hparams, kept: dict[int, State], end: int,
                  adjoint: Tensors) -> tuple[Hparams, Tensors]:
    """Σ_t ᾱ_t B_t over the steps after the first kept state, one segment at a time from the last:
    the segment [c, c') between kept states s_c and s_c' (s_end for the last) goes back in one
    :meth:`~hypergradient.core.problem.InnerProblem.vjp_through` (replayed from s_c with a graph),
    giving the adjoint at s_c and the segment's share of the hypergradient. Memory: one segment's graph.
    Returns (the hypergradient's indirect part, the adjoint at the first kept state)."""
    g = zeros_like(lam)
    cot: Tensors = adjoint
    bounds = sorted(kept) + [end]
    for c, c_next in reversed(list(zip(bounds[:-1], bounds[1:]))):
        cot, gl = problem.vjp_through(kept[c], lam, c_next - c, cot)
        for k in g:
            g[k] = g[k] + gl[k]
    return g, cot


def stored(problem: InnerProblem, lam: Hparams, state: State, T: int, K: int,
           every: int) -> tuple[Hparams, Hparams, State, torch.Tensor, int, Tensors]:
    """The ``recompute`` (every = 1) and ``checkpoint`` policies over the last K steps: the forward
    pass keeps s_t for t = first, first + every, …; :func:`segment_sweep` goes back."""
    end = state.t + T  # absolute index of the last step (the start state may have t > 0)
    first = end - K    # the sweep starts from s_first
    state, kept = problem.run(state, lam, T, keep=lambda t: first <= t < end and (t - first) % every == 0)
    loss, alpha, direct = problem.val_grad(state, lam)
    indirect, adjoint = segment_sweep(problem, lam, kept, end, padded(alpha, state))
    held = sum(s.nbytes() for s in kept.values()) + min(every, K) * state.nbytes()
    return direct, indirect, state, loss, held, adjoint


class _Reverse(Estimator):
    exact = True
    vectorizable = True   # linear in the adjoint: the sum over stacked tasks is exact
    memory = "graph: O(T·activations); recompute: O(T·|s|); checkpoint(k): O((T/k + k)·|s|)"

    def __init__(self, storage: str = "graph", every: int | None = None, K: int | None = None,
                 wrt_init: bool = False) -> None:
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
        if every is not None and storage != "checkpoint":
            raise ValueError("every=k applies to storage='checkpoint'")
        self.storage, self.every, self.K, self.wrt_init = storage, every, K, bool(wrt_init)

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        K = T if self.K is None else min(self.K, T)
        if K < 1:
            raise ValueError(f"K must be >= 1, got {self.K}")
        held: int | None = None
        info: dict = {"K": K}
        if self.storage == "graph":
            direct, indirect, final, loss, w0 = unrolled(problem, lam, state, T, K, self.wrt_init)
        else:
            every = 1 if self.storage == "recompute" else (self.every or max(1, round(math.sqrt(K))))
            direct, indirect, final, loss, held, adjoint = stored(problem, lam, state, T, K, every)
            w0 = [x if x is not None else torch.zeros_like(p) for x, p in zip(adjoint, state.params)]
        if self.wrt_init:      # dL_val/dw at the start of the reverse pass: the initial weights when K = T (MAML)
            info["init_grad"] = dict(zip(problem.names, cast(list, w0)))
        info["stored_bytes"] = held
        return Hypergradient.of(direct, indirect, state=final, val_loss=loss, info=info)


@register
class RMD(_Reverse):
    """Exact reverse mode through all T steps (storage: graph, recompute or checkpoint).

    ``storage``: graph | recompute | checkpoint (``every=k``, default ⌈√T⌋). ``wrt_init=True`` also
    gives ``info["init_grad"]`` = dL_val/dw_0, the gradient at the initial weights (second-order MAML)."""

    name = "rmd"

    def __init__(self, storage: str = "graph", every: int | None = None, wrt_init: bool = False) -> None:
        super().__init__(storage, every, wrt_init=wrt_init)


@register
class TruncatedRMD(_Reverse):
    """Reverse mode through the last K steps only (Shaban et al. 2019); exact when K = T."""

    name = "truncated_rmd"
    exact = False

    def __init__(self, K: int = 1, storage: str = "graph", every: int | None = None, wrt_init: bool = False) -> None:
        if not isinstance(K, int) or K < 1:
            raise ValueError(f"K must be a positive int, got {K!r}")
        super().__init__(storage, every, K, wrt_init)
