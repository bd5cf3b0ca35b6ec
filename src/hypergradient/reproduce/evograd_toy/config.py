"""The 1-D toy's configuration (EvoGrad paper §4.1 and App. C.1; every value written into results.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..common import ReproConfig

__all__ = ["ToyConfig"]


@dataclass
class ToyConfig(ReproConfig):
    # -- the paper (§4.1, App. C.1): f_T = (x−1)² + λx², f_V = (x−0.5)²; 100 values of λ from 0.1 to 2.0,
    #    100 repetitions each, populations 2 / 10 / 100, ε ~ N(0, 1) (σ = 1), τ = 0.5; trajectories by
    #    Algorithm 2 with 5 steps of SGD at learning rate 0.1
    lam_lo: float = 0.1
    lam_hi: float = 2.0
    n_lams: int = 100
    trials: int = 100
    populations: tuple = (2, 10, 100)
    sigma: float = 1.0
    temperature: float = 0.5
    traj_steps: int = 5
    traj_lr: float = 0.1
    # -- our choices (the paper leaves them open)
    x_at: str = "x*(λ) = 1/(1+λ)"      # where each estimate is taken ("with random choice of x" in §4.1: we use x*)
    traj_starts: tuple = ((0.0, 2.0), (0.0, 0.1))   # (x0, λ0) of the trajectories
    traj_long: int = 200               # a longer run beside the paper's 5 steps, to show where λ goes
    traj_trials: int = 20              # EvoGrad trajectories per start (each its own noise)
    seeds: int = 1                     # (the estimates' noise is seeded by population and trial)
    quick: bool = False

    QUICK: ClassVar[dict[str, Any]] = dict(n_lams=20, trials=20, traj_long=20, traj_trials=3)
    NOT_FINGERPRINTED: ClassVar[tuple[str, ...]] = ("seeds",)
