"""One-step lookahead (T1–T2; Luketina et al. 2016): unroll only the last inner step.

Treat s_{T-1} (weights and optimizer state) as constant, so ``dw_T/dλ ≈ B_T`` (HyperDistill paper
§3.2, "Short-horizon approximations"; ALGORITHMS.md §5):

    g = ∂L_val(w_T, λ)/∂λ + α_T B_T,    α_T = ∂L_val/∂w_T,  B_T = ∂Φ(s_{T-1}, λ; D_T)/∂λ

One VJP of Φ at s_{T-1} per hypergradient. Equals truncated RMD with K = 1. Online: at every step t
the same formula with T = t.

    >>> hg = estimate("one_step", problem, lam, T=50)
"""

from __future__ import annotations

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams, Tensors
from .base import register
from .lookahead import Lookahead
from .shared import padded


@register
class OneStep(Lookahead):
    """g = g^FO_T + α_T B_T; memory O(|s|); one step, one VJP, one validation gradient beyond T − 1 steps."""

    name = "one_step"

    def indirect(self, problem: InnerProblem, lam: Hparams, prev: State, state: State, alpha: Tensors) -> Hparams:
        """α_t B_t at ``prev`` = s_{t-1}: one VJP of Φ."""
        return problem.vjp(prev, lam, padded(alpha, state))[1]
