"""Fixed per-step schedules a practitioner would hand-tune (non-greedy paper, App. D: cosine annealing
for MNIST and SVHN, from a small grid of initial rates chosen on validation). A schedule is a list of T
values, one per inner step, for a hyperparameter declared with ``Hyper(..., schedule=T)``: run it with
:func:`~hypergradient.baselines.grid_search` (a grid value may be such a list) or set it into λ."""

from __future__ import annotations

import math

__all__ = ["cosine"]


def cosine(alpha0: float, T: int, final: float = 0.0) -> list[float]:
    """Cosine annealing over T steps, as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T,
    eta_min=final)``: step t = 1..T uses ``final + (alpha0 − final)(1 + cos(π (t−1)/T)) / 2``."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return [final + (alpha0 - final) * (1 + math.cos(math.pi * (t - 1) / T)) / 2 for t in range(1, T + 1)]
