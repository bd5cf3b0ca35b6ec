"""The toy as an :class:`~hypergradient.InnerProblem` (one weight x, the loss hyperparameter λ), the
estimates of the registered ``evograd`` estimator at x*(λ), and Algorithm 2's trajectories.

With f_T(x, λ) = (x − 1)² + λ x² and f_V(x) = (x − 0.5)², the inner optimum is x*(λ) = 1/(1 + λ) and
the true hypergradient d f_V(x*(λ))/dλ = (λ − 1)/(λ + 1)³ (minimum at λ = 1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.inputs import Data, Hypers
from ...core.problem import InnerProblem
from ...estimators import get
from ...optim import sgd
from .config import ToyConfig

__all__ = ["toy_problem", "closed_form", "estimates", "trajectories"]

DT = torch.float64


class _X(nn.Module):
    """The single inner weight x (the model ignores its input)."""

    def __init__(self) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros((), dtype=DT))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.x


def toy_problem(lr: float = 0.1) -> InnerProblem:
    """f_T = (x − 1)² + λ x², f_V = (x − 0.5)², SGD on x at ``lr`` (Algorithm 2's inner step)."""
    def f_T(f: Any, b: Any, hp: Any) -> torch.Tensor:
        x = f(b)
        return (x - 1) ** 2 + hp["lam"] * x ** 2

    def f_V(f: Any, b: Any, hp: Any) -> torch.Tensor:
        return (f(b) - 0.5) ** 2
    dummy = torch.zeros(1, dtype=DT)
    return InnerProblem(_X(), f_T, f_V, sgd(lr=lr), Hypers(loss={"lam": torch.tensor(1.0, dtype=DT)}),
                        Data([dummy], dummy))


def closed_form(lam: torch.Tensor) -> torch.Tensor:
    return (lam - 1) / (lam + 1) ** 3


def _estimator(cfg: ToyConfig, K: int, seed: int) -> Any:
    return get("evograd", population=K, sigma=cfg.sigma, temperature=cfg.temperature, noise="gaussian",
               when="before", seed=seed, check_noise=False)


def estimates(cfg: ToyConfig, K: int) -> torch.Tensor:
    """(n_lams, trials) EvoGrad estimates at x*(λ), by the registered estimator (one call each: one
    virtual evolutionary step from x*, before the model's own step); trial r draws from seed r."""
    problem = toy_problem()
    lams = torch.linspace(cfg.lam_lo, cfg.lam_hi, cfg.n_lams, dtype=DT)
    out = torch.empty(cfg.n_lams, cfg.trials, dtype=DT)
    for r in range(cfg.trials):
        est = _estimator(cfg, K, seed=1000 * K + r)
        st = est.new_state()
        for i, lam in enumerate(lams):
            lam_d = {"loss.lam": lam.clone()}
            state = problem.init_state([1 / (1 + lam)])
            h, _ = est.online_step(problem, lam_d, state, est.online_init(problem, lam_d, state, st))
            out[i, r] = h.value["loss.lam"]
    return out


def trajectories(cfg: ToyConfig, K: int, x0: float, lam0: float, steps: int, seed: int | None) -> dict[str, list[float]]:
    """Algorithm 2: x ← x − α ∂f_T/∂x, then λ ← λ − α g with g EvoGrad's estimate at the new x (seed
    None: the closed form (λ − 1)/(λ + 1)³ instead, the paper's ground-truth trajectory)."""
    problem = toy_problem(cfg.traj_lr)
    lam = {"loss.lam": torch.tensor(lam0, dtype=DT)}
    state = problem.init_state([torch.tensor(x0, dtype=DT)])
    xs, ls = [x0], [lam0]
    est = None if seed is None else _estimator(cfg, K, seed)
    st = None if est is None else est.new_state()
    for _ in range(steps):
        state = problem.step(state, lam)
        if est is None:
            g = closed_form(lam["loss.lam"])
        else:
            h, _ = est.online_step(problem, lam, state, est.online_init(problem, lam, state, st))
            g = h.value["loss.lam"]
        lam = {"loss.lam": (lam["loss.lam"] - cfg.traj_lr * g).detach()}
        xs.append(float(state.params[0]))
        ls.append(float(lam["loss.lam"]))
    return {"x": xs, "lam": ls}
