"""Exact online reverse mode: at every inner step t, dL_val(w_t)/dλ through the steps taken so far
(all of them, or the last K: ``window=K``, online truncated reverse mode).

Semantics when λ changes between steps (the online setting, where the outer optimizer moves λ after
every step): the past steps are taken as they were, each with the λ_s it used, and the hypergradient
is the derivative with respect to λ as the one variable those steps share,

    g_t = ∂L_val(w_t, λ_t)/∂λ + Σ_{s = t−K+1}^{t} ᾱ_s B_s(s_{s−1}, λ_s),   ᾱ_t = (∂L_val/∂w_t, 0),
    ᾱ_{s−1} = ᾱ_s A_s(s_{s−1}, λ_s)

— real-time recurrent learning's semantics, so online ``fmd`` gives the same value at every step
(``fmd`` carries Z through the steps as they were taken). With λ fixed it is offline ``rmd`` at t = T
(truncated RMD(K) with a window); ``window=1`` is ``one_step``.

Storage policies, both with these semantics:

* ``recompute`` (default): keep s_{t−K} … s_{t−1} and each step's λ_s; walk back with one VJP of Φ per
  step (each VJP recomputes its step). Memory O(min(t, K)·|s|), cost O(min(t, K)) VJPs per step.
* ``graph``: keep autograd's graph of every step taken (each step's λ_s a leaf of its own) and
  backpropagate through all of it at every step; no recomputation, memory O(t · activations).
  The whole history only (``window=None``): a graph cannot be cut at t − K after it is built.

Offline (``estimate``) it is the reverse pass of ``rmd`` / ``truncated_rmd`` over the last K steps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.autograd import grad_or_zero
from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import zeros_like
from ..core.types import Hparams
from .base import Carry, Estimator, EstimatorState, Hypergradient, register
from .rmd import stored, unrolled
from .shared import padded

STORAGE = ("recompute", "graph")


@dataclass
class OnlineRMDCarry(Carry):
    """The steps the reverse pass goes back through: (s_{s−1}, λ_s) per step in the window
    (``recompute``), or the graph's current state and each step's λ_s leaves (``graph``)."""

    history: deque = field(default_factory=deque)
    graph: State | None = None
    leaves: list = field(default_factory=list)


@register
class OnlineRMD(Estimator):
    """Exact online reverse mode: dL_val(w_t)/dλ through steps 1..t (or the last ``window``) at every t.

    ``window``: None (every step since the start) or K ≥ 1; ``storage``: recompute | graph
    (graph: ``window=None`` only)."""

    vectorizable = True

    name = "online_rmd"
    exact = True
    online = True
    memory = "recompute: O(min(t, K)·|s|); graph: O(t·activations)"

    def __init__(self, window: int | None = None, storage: str = "recompute") -> None:
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
            raise ValueError(f"window must be None or a positive int, got {window!r}")
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
        if storage == "graph" and window is not None:
            raise ValueError("storage='graph' keeps the graph of every step and cannot drop the steps before a "
                             "window; use storage='recompute' with window=K")
        self.window, self.storage = window, storage

    # ---- offline: the reverse pass of rmd over the last K steps ------------------------------------
    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        K = T if self.window is None else min(self.window, T)
        if self.storage == "graph":
            direct, indirect, final, loss, _ = unrolled(problem, lam, state, T, K)
        else:
            direct, indirect, final, loss, _, _ = stored(problem, lam, state, T, K, 1)
        return Hypergradient.of(direct, indirect, state=final, val_loss=loss, info={"window": K})

    # ---- online ----------------------------------------------------------------------------------------
    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> OnlineRMDCarry:
        return OnlineRMDCarry(est_state, deque(maxlen=self.window))

    def advance(self, problem: InnerProblem, lam: Hparams, state: State,
                carry: OnlineRMDCarry) -> tuple[Hypergradient, OnlineRMDCarry]:
        lam_t = {k: v.detach().clone() for k, v in lam.items()}      # λ_t as this step uses it (λ moves later)
        if self.storage == "graph":
            return self._advance_graph(problem, lam_t, state, carry)
        carry.history.append((state.detach(), lam_t))
        new = problem.step(state, lam_t)
        loss, alpha, direct = problem.val_grad(new, lam_t)
        indirect = zeros_like(lam_t)
        cot: Any = padded(alpha, new)
        for prev, lam_s in reversed(carry.history):                  # ᾱ_{s−1} = ᾱ_s A_s; g += ᾱ_s B_s
            cot, g = problem.vjp(prev, lam_s, cot)
            indirect = {k: indirect[k] + g[k] for k in indirect}
        info = {"window": len(carry.history), "stored_bytes": sum(s.nbytes() for s, _ in carry.history)}
        return Hypergradient.of(direct, indirect, state=new, val_loss=loss, info=info), carry

    def _advance_graph(self, problem: InnerProblem, lam_t: Hparams, state: State,
                       carry: OnlineRMDCarry) -> tuple[Hypergradient, OnlineRMDCarry]:
        if carry.graph is None or carry.graph.t != state.t:
            carry.graph, carry.leaves = state.detach(), []          # a fresh start (or a restarted trajectory)
        leaf = {k: v.requires_grad_() for k, v in lam_t.items()}
        carry.leaves.append(leaf)
        with torch.enable_grad():
            carry.graph = problem.step(carry.graph, leaf, create_graph=True)
        new = carry.graph.detach()
        loss, alpha, direct = problem.val_grad(new, lam_t)
        keys = list(lam_t)
        with torch.enable_grad():
            gs = grad_or_zero(carry.graph.params, [lf[k] for lf in carry.leaves for k in keys], alpha,
                              retain_graph=True)
        indirect = {k: sum((gs[i * len(keys) + j] for i in range(len(carry.leaves))), torch.zeros_like(lam_t[k]))
                    for j, k in enumerate(keys)}
        return Hypergradient.of(direct, indirect, state=new, val_loss=loss,
                                info={"window": len(carry.leaves)}), carry
