"""Adadelta (``torch.optim.Adadelta``).

For each parameter tensor, with decay ρ, ε, weight decay μ and lr α (Zeiler 2012, Algorithm 1, with
torch's extra lr and its ε inside both roots)::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    E[g²]_t = ρ E[g²]_{t-1} + (1 − ρ) g_t²
    Δ_t = √(E[Δ²]_{t-1} + ε) / √(E[g²]_t + ε) · g_t
    E[Δ²]_t = ρ E[Δ²]_{t-1} + (1 − ρ) Δ_t²
    w_t = w_{t-1} − α Δ_t
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from ..base import Rule, zeros_like_all


class AdadeltaState(NamedTuple):
    square_avg: tuple[torch.Tensor, ...]  # E[g²]_t
    acc_delta: tuple[torch.Tensor, ...]   # E[Δ²]_t


@register_optimizer
class Adadelta(Rule):
    elementwise = True
    name = "adadelta"
    torch_class = "Adadelta"
    hparam_names = ("lr", "rho", "eps", "weight_decay")
    defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}

    def init(self, params: Sequence[torch.Tensor]) -> AdadeltaState:
        return AdadeltaState(zeros_like_all(params), zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        rho, eps = c["rho"], c["eps"]
        sq0, acc0 = s
        g = self.decay(o, g, p, c["weight_decay"])
        sq = rho * sq0 + (1 - rho) * (g * g)
        delta = (acc0 + eps).sqrt() / (sq + eps).sqrt() * g
        acc = rho * acc0 + (1 - rho) * (delta * delta)
        return p - c["lr"] * delta, (sq, acc)
