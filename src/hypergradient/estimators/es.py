"""Antithetic evolution strategies (ES) on the unrolled validation loss (Salimans et al. 2017; TorchOpt's
``zero_order`` "antithetic"): a zeroth-order estimate of the indirect term, no derivative of Φ at all.

With f(λ') = L_val(w_T(λ'), λ) (λ' enters the T inner steps only, the direct slot is held at λ), P
antithetic pairs of Gaussian directions ε_i ~ N(0, I) over λ's raw entries and a scale σ::

    d_i = (f(λ + σ ε_i) − f(λ − σ ε_i)) / (2σ),      indirect ≈ (1/P) Σ_i d_i ε_i
    direct = ∂L_val(w_T(λ), λ)/∂λ                     (exact: one validation gradient)

The estimate is unbiased for the gradient of the Gaussian-smoothed f, E_ε[f(λ + σε)]; each pair is
evaluated with common random numbers (the same batches and dropout seeds, which the problem fixes by
step), so the even-order terms of f cancel inside a pair: on an f quadratic in λ, d_i = ⟨∇f, ε_i⟩
exactly. Cost: (2P + 1)·T steps and one validation gradient; memory O(|s|). The directions are drawn
with the estimator state's generator (:class:`~hypergradient.estimators.base.GeneratorState`), so repeated calls draw new ones and a run is
reproducible from its seed.
"""

from __future__ import annotations

import torch

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import zeros_like
from ..core.types import Hparams
from .base import Estimator, EstimatorState, GeneratorState, Hypergradient, register

__all__ = ["ES"]


@register
class ES(Estimator):
    """Antithetic evolution strategies over λ through the whole unroll (zeroth order; ``population``
    antithetic pairs, scale ``sigma``); the direct term exact."""

    not_vectorizable = "its perturbations and loss differences would be shared by all tasks (correlated noise: another estimator)"

    name = "es"
    online = False
    memory = "O(|s|)"
    state_class = GeneratorState

    def __init__(self, population: int = 8, sigma: float = 1e-2, seed: int = 0) -> None:
        if not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be a positive int (antithetic pairs), got {population!r}")
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"sigma must be a positive float, got {sigma!r}")
        self.population, self.sigma, self.seed = population, float(sigma), seed

    def new_state(self) -> GeneratorState:
        return GeneratorState(torch.Generator().manual_seed(self.seed))

    def _f(self, problem: InnerProblem, lam: Hparams, shifted: Hparams, state: State, T: int) -> float:
        """f(λ') = L_val(w_T(λ'), λ): the inner loop with λ', the validation loss at λ."""
        final, _ = problem.run(state, shifted, T)
        return float(problem.val_loss_at(final, lam))

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        gen = self.own(est_state).generator
        final, _ = problem.run(state, lam, T)
        loss, _, direct = problem.val_grad(final, lam)
        indirect = zeros_like(lam)
        slopes = []
        s = self.sigma
        for _ in range(self.population):
            eps = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) for k, v in lam.items()}
            up = self._f(problem, lam, {k: lam[k] + s * eps[k] for k in lam}, state, T)
            down = self._f(problem, lam, {k: lam[k] - s * eps[k] for k in lam}, state, T)
            d = (up - down) / (2 * s)
            slopes.append(d)
            indirect = {k: indirect[k] + d * eps[k] for k in lam}
        indirect = {k: v / self.population for k, v in indirect.items()}
        info = {"population": self.population, "sigma": s, "slopes": torch.tensor(slopes, dtype=torch.float64)}
        return Hypergradient.of(direct, indirect, state=final, val_loss=loss, info=info)
