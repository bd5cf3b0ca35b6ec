"""First-order hypergradient (FO): the direct term only, ``dL/dλ ≈ ∂L_val(w_T, λ)/∂λ``, indirect = 0.

All second-order terms α_T Σ_t (Π A_s) B_t of ALGORITHMS.md §0 are dropped (HyperDistill paper §3.2,
"we may completely ignore all the second-order derivatives"; Flennerhag et al. 2020). One validation
gradient per hypergradient, online at every step. The hypergradient of an optimizer hyperparameter is
identically zero under FO.

    >>> hg = estimate("first_order", problem, lam, T=50)     # hg.indirect is all zeros
"""

from __future__ import annotations

import torch

from ._online import Lookahead
from .base import register


@register
class FirstOrder(Lookahead):
    """g = g^FO_T; memory O(|s|); one validation gradient."""

    name = "first_order"

    def lookahead(self, problem, lam, prev):
        state = problem.step(prev, lam)
        loss, _, direct = problem.val_grad(state, lam)
        return state, loss, direct, {k: torch.zeros_like(v) for k, v in lam.items()}
