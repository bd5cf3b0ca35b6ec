"""Greedy hypergradient descent on any :class:`~hypergradient.InnerProblem` (the non-greedy paper's
greedy baseline, Micaelli & Storkey App. B, after Baydin et al. 2018): one inner optimization, λ
updated after every inner step t by plain SGD on the one-step (greedy) hypergradient

    g_t = ∂L_val(Φ(s_{t−1}, λ))/∂λ        (s_{t−1} held fixed: ``one_step``, ALGORITHMS.md §5, §8)
    λ ← λ − η · clamp(g_t, −c, c)          (paper: η = 0.2, c = 1, λ started at 0)

For the SGD learning rate alone this is Baydin's SGD-HD with the validation loss in place of the next
training batch's; here it covers every hyperparameter λ holds (lr, momentum and weight decay in the
paper). The trained model is the run's final state; the learned schedule is λ's value at every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.problem import InnerProblem
from ..core.state import Cost, DivergenceError, State
from ..core.types import Hparams

__all__ = ["GreedyResult", "greedy_hd", "clip_hypergradients"]


@dataclass
class GreedyResult:
    state: State | None                  # s_T of the run (None: it diverged)
    schedule: dict[str, torch.Tensor]    # λ key -> (T, *shape): the raw value each step used
    cost: Cost = field(default_factory=Cost)
    seconds: float = 0.0
    diverged: bool = False
    history: dict[str, Any] = field(default_factory=dict)


def clip_hypergradients(outer: torch.optim.Optimizer, value: float) -> torch.optim.Optimizer:
    """Clamp every ``.grad`` the outer optimizer sees into [−value, value] before each of its steps (a
    step pre-hook on ``outer``, which is returned)."""
    if not value > 0:
        raise ValueError(f"the hypergradient clip must be positive, got {value!r}")

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.clamp_(-value, value)
    outer.register_step_pre_hook(hook)
    return outer


def greedy_hd(problem: InnerProblem, hparams: Hparams, *, lr: float = 0.2, clip: float | None = 1.0,
              T: int | None = None, estimator: str = "one_step", progress: bool = False,
              **estimator_options: Any) -> GreedyResult:
    """One greedy online run of T steps from the problem's initial state; ``hparams`` (λ, leaf tensors)
    is updated in place. A run whose training loss stops being finite returns ``diverged=True``."""
    from ..drivers.online import run_online
    T = problem.horizon_or(T)
    outer = torch.optim.SGD(list(hparams.values()), lr=lr)
    if clip is not None:
        clip_hypergradients(outer, clip)
    used = [{k: v.detach().clone() for k, v in hparams.items()}]     # λ at step 1

    def record(states: Any, hg: Any) -> None:
        used.append({k: v.detach().clone() for k, v in hparams.items()})
    before, t0 = problem.cost.copy(), time.perf_counter()
    state: State | None
    try:
        res = run_online(problem, estimator, hparams, outer, T=T, callback=record, progress=progress,
                         nonfinite="skip", **estimator_options)
        state, history, diverged = res.state, res.history, False
    except (DivergenceError, FloatingPointError):
        state, history, diverged = None, {}, True
    steps = used[:T]
    schedule = {k: torch.stack([u[k] for u in steps]) for k in hparams}
    return GreedyResult(state, schedule, problem.cost - before, time.perf_counter() - t0, diverged, history)
