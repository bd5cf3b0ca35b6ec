"""One-step lookahead (T1–T2; Luketina et al. 2016): unroll only the last inner step.

Treat s_{T-1} (weights and optimizer state) as constant, so ``dw_T/dλ ≈ B_T`` (HyperDistill paper
§3.2, "Short-horizon approximations"; ALGORITHMS.md §5):

    g = ∂L_val(w_T, λ)/∂λ + α_T B_T,    α_T = ∂L_val/∂w_T,  B_T = ∂Φ(s_{T-1}, λ; D_T)/∂λ

One VJP of Φ at s_{T-1} per hypergradient. Equals truncated RMD with K = 1. Online: at every step t
the same formula with T = t.

``fd=c`` (DARTS' finite difference, Liu et al. 2019 Eq. 8; Betty's ``darts``): no second-order product.
Write Φ(s, λ) = U(s, g(w, λ), λ) with g = ∇_w L_train and the optimizer's update U; then
α B = α ∂U/∂λ|_g + ⟨v, ∂g/∂λ⟩ with v = α ∂U/∂g (a first-order VJP through the update alone: −lr α for
plain SGD), and the mixed term is a central difference of first-order gradients::

    ⟨v, ∂g/∂λ⟩ ≈ (∇_λ L_train(w + ε v, λ) − ∇_λ L_train(w − ε v, λ)) / (2ε),    ε = c / ‖v‖

(DARTS' step rule, c = 0.01 there). Error O(ε²); as ε → 0 it is one_step (float64 test). Cost: the
step (its update kept differentiable, so the VJP through it needs no pass over the model), two
first-order λ-gradients (``cost.grads``) and the validation gradient.

    >>> hg = estimate("one_step", problem, lam, T=50)
"""

from __future__ import annotations

import math

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams, Tensors
from .base import Hypergradient, register
from .lookahead import Lookahead
from .shared import padded


@register
class OneStep(Lookahead):
    """g = g^FO_T + α_T B_T; memory O(|s|); one step, one VJP, one validation gradient beyond T − 1 steps."""

    name = "one_step"

    def __init__(self, fd: float | None = None) -> None:
        if fd is not None and not (isinstance(fd, (int, float)) and fd > 0):
            raise ValueError(f"fd must be None (the exact product) or a positive float (ε = fd / ‖v‖), got {fd!r}")
        self.fd = None if fd is None else float(fd)

    @property
    def vectorizable(self) -> bool:     # type: ignore[override]
        """Exact on stacked tasks without ``fd`` (with it, ε = c/‖v‖ takes the norm over all tasks)."""
        return self.fd is None

    not_vectorizable = "with fd= its step ε = c/‖v‖ takes the norm over all tasks together"

    def indirect(self, problem: InnerProblem, lam: Hparams, prev: State, state: State, alpha: Tensors) -> Hparams:
        """α_t B_t at ``prev`` = s_{t-1}: one VJP of Φ."""
        return problem.vjp(prev, lam, padded(alpha, state))[1]

    def lookahead(self, problem: InnerProblem, lam: Hparams, prev: State) -> Hypergradient:
        """With ``fd``: the step keeps its optimizer update differentiable (``step_update``), so the
        update's VJP needs no second pass over the model; then the central difference."""
        if self.fd is None:
            return super().lookahead(problem, lam, prev)
        state, update_vjp = problem.step_update(prev, lam)
        loss, alpha, direct = problem.val_grad(state, lam)
        v, through_update = update_vjp(padded(alpha, state))
        norm = math.sqrt(sum(float((x * x).sum()) for x in v))
        indirect = through_update
        if norm > 0.0:
            eps, t = self.fd / norm, prev.t + 1
            plus = problem.lam_grad(prev, lam, [w + eps * x for w, x in zip(prev.params, v)], t)
            minus = problem.lam_grad(prev, lam, [w - eps * x for w, x in zip(prev.params, v)], t)
            indirect = {k: through_update[k] + (plus[k] - minus[k]) / (2 * eps) for k in lam}
        return Hypergradient.of(direct, indirect, state=state, val_loss=loss)
