"""Persistent evolution strategies (PES; Vicol, Metz and Sohl-Dickstein, ICML 2021, Algorithm 2 with
antithetic sampling): an unbiased zeroth-order online hypergradient over truncated unrolls.

P antithetic pairs of particles run beside the inner loop, each pair with its own two perturbed
trajectories s_j^± and an accumulated perturbation ξ_j. Every truncation of K inner steps::

    ε_j ~ N(0, σ² I);   ξ_j ← ξ_j + ε_j                 (the perturbations of every truncation so far)
    s_j^± ← K steps of Φ(·, λ ± ε_j) from s_j^±
    L_j^± = L_val(w_t(s_j^±), λ)                        (t: the truncation's last step)
    indirect_t ≈ 1/(2σ²P) Σ_j ξ_j (L_j^+ − L_j^−)

so at the end of each truncation it estimates the indirect part of dL_val(w_t)/dλ through *all* the
steps since the start (the past truncations' perturbations are credited through ξ), unbiased for the
Gaussian-smoothed loss, where truncated ES (``persistent=False``: ξ_j = ε_j) only sees the last K
steps and is biased. The direct term ∂L_val(w_t, λ)/∂λ is exact (λ is perturbed inside the inner
loop only, as in :mod:`hypergradient.estimators.es`). The inner steps within a truncation give no
hypergradient (``active=False``; drivers take no outer step there); the horizon closes a shorter
last truncation. Cost per step: 2P + 1 steps;
one validation gradient and 2P validation losses per truncation. With λ moving between truncations
the particles keep their trajectories (the paper's online use). ``K = T`` offline is ``es``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import zeros_like
from ..core.types import Hparams
from .base import Carry, Estimator, EstimatorState, GeneratorState, Hypergradient, register
from .shared import last_of_steps

__all__ = ["PES", "PESCarry"]


@dataclass
class PESCarry(Carry):
    """The particles' trajectories (+ then − per pair), the accumulated perturbations ξ_j, this
    truncation's ε_j and how many of its steps are taken."""

    plus: list = field(default_factory=list)
    minus: list = field(default_factory=list)
    xi: list = field(default_factory=list)
    eps: list = field(default_factory=list)
    k: int = 0
    end: int | None = None       # the last step of the inner optimization: it closes a shorter truncation


@register
class PES(Estimator):
    """Persistent ES over truncations of ``K`` steps (``population`` antithetic pairs, scale ``sigma``);
    ``persistent=False`` is truncated ES (biased)."""

    not_vectorizable = "its perturbations and loss differences would be shared by all tasks (correlated noise: another estimator)"

    name = "pes"
    online = True
    memory = "O(P·|s|): 2P perturbed trajectories"
    state_class = GeneratorState

    def __init__(self, K: int = 5, population: int = 8, sigma: float = 1e-2, seed: int = 0,
                 persistent: bool = True) -> None:
        if not isinstance(K, int) or K < 1:
            raise ValueError(f"K must be a positive int (steps per truncation), got {K!r}")
        if not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be a positive int (antithetic pairs), got {population!r}")
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"sigma must be a positive float, got {sigma!r}")
        self.K, self.population, self.sigma, self.seed = K, population, float(sigma), seed
        self.persistent = bool(persistent)

    def new_state(self) -> GeneratorState:
        return GeneratorState(torch.Generator().manual_seed(self.seed))

    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> PESCarry:
        self.own(est_state)
        P = self.population
        return PESCarry(est_state, [state] * P, [state] * P, [zeros_like(lam) for _ in range(P)], end=problem.horizon)

    def advance(self, problem: InnerProblem, lam: Hparams, state: State,
                carry: PESCarry) -> tuple[Hypergradient, PESCarry]:
        gen = self.own(carry.est_state).generator
        if carry.k == 0:                                              # a new truncation: ε_j, ξ_j += ε_j
            carry.eps = [{k: self.sigma * torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)
                          for k, v in lam.items()} for _ in range(self.population)]
            carry.xi = [{k: (x[k] if self.persistent else 0) + e[k] for k in lam} for x, e in zip(carry.xi, carry.eps)]
        carry.plus = [problem.step(s, {k: lam[k] + e[k] for k in lam}) for s, e in zip(carry.plus, carry.eps)]
        carry.minus = [problem.step(s, {k: lam[k] - e[k] for k in lam}) for s, e in zip(carry.minus, carry.eps)]
        new = problem.step(state, lam)
        carry.k += 1
        if carry.k < self.K and new.t != carry.end:
            zero = zeros_like(lam)
            return Hypergradient.of(zero, zeros_like(lam), state=new, active=False, info={"k": carry.k}), carry
        carry.k = 0
        loss, _, direct = problem.val_grad(new, lam)
        indirect = zeros_like(lam)
        diffs = []
        for sp, sm, xi in zip(carry.plus, carry.minus, carry.xi):
            d = float(problem.val_loss_at(sp, lam)) - float(problem.val_loss_at(sm, lam))
            diffs.append(d)
            indirect = {k: indirect[k] + d * xi[k] for k in lam}
        scale = 1.0 / (2 * self.sigma ** 2 * self.population)
        indirect = {k: scale * v for k, v in indirect.items()}
        info = {"differences": torch.tensor(diffs, dtype=torch.float64), "t": new.t}
        return Hypergradient.of(direct, indirect, state=new, val_loss=loss, info=info), carry

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        """The online recursion over T steps with λ fixed; the estimate at the last completed
        truncation, which ends at T."""
        carry = self.start(problem, lam, state, est_state)
        carry.end = state.t + T
        return last_of_steps(self.advance, problem, lam, state, carry, T)
