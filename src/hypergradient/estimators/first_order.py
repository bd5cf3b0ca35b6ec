"""First-order hypergradient (FO): the direct term only, ``dL/dλ ≈ ∂L_val(w_T, λ)/∂λ``, indirect = 0.

All second-order terms α_T Σ_t (Π A_s) B_t of ALGORITHMS.md §0 are dropped (HyperDistill paper §3.2,
"we may completely ignore all the second-order derivatives"; Flennerhag et al. 2020). One validation
gradient per hypergradient, online at every step. The hypergradient of an optimizer hyperparameter is
identically zero under FO.

    >>> hg = estimate("first_order", problem, lam, T=50)     # hg.indirect is all zeros
"""

from __future__ import annotations

from ..core.tree import zeros_like
from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams, Tensors
from .base import register
from .lookahead import Lookahead


@register
class FirstOrder(Lookahead):
    """g = g^FO_T; memory O(|s|); one validation gradient."""

    vectorizable = True

    name = "first_order"

    def indirect(self, problem: InnerProblem, lam: Hparams, prev: State, state: State, alpha: Tensors) -> Hparams:
        return zeros_like(lam)
