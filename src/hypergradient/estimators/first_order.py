"""First-order hypergradient (FO): the direct term only, ``dL/dλ ≈ ∂L_val(w_T, λ)/∂λ``, indirect = 0.

All second-order terms α_T Σ_t (Π A_s) B_t of ALGORITHMS.md §0 are dropped (HyperDistill paper §3.2,
"we may completely ignore all the second-order derivatives"; Flennerhag et al. 2020). One validation
gradient per hypergradient, online at every step. The hypergradient of an optimizer hyperparameter is
identically zero under FO.

    >>> hg = estimate("first_order", problem, lam, T=50)     # hg.indirect is all zeros
"""

from __future__ import annotations

import torch

from ._online import detached, result
from .base import Estimator, register


@register
class FirstOrder(Estimator):
    """g = g^FO_T; memory O(|s|); one validation gradient."""

    name = "first_order"
    online = True
    memory = "O(|s|)"

    def estimate(self, problem, lam, T, state):
        state, _ = problem.run(state, lam, T)
        loss, _, direct = problem.val_grad(state, lam)
        return direct, {k: torch.zeros_like(v) for k, v in lam.items()}, {"val_loss": loss, "state": state}

    def online_init(self, problem, lam, state):
        return None

    def online_step(self, problem, lam, state, carry):
        lam, before = detached(lam), problem.cost.copy()
        state = problem.step(state, lam)
        loss, _, direct = problem.val_grad(state, lam)
        zero = {k: torch.zeros_like(v) for k, v in lam.items()}
        return state, result(problem, before, direct, zero, {"val_loss": loss}, self.name), carry
