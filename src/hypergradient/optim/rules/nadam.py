"""NAdam (``torch.optim.NAdam``; Dozat 2016): Adam with Nesterov momentum and a momentum schedule.

For each parameter tensor, with β1, β2, ε, momentum decay ψ, weight decay μ and lr α (t = 1, 2, ...)::

    coupled:  g_t = ∇L(w_{t-1}) + μ w_{t-1}            decoupled:  w_{t-1} ← (1 − α μ) w_{t-1}
    μ_t = β1 (1 − ½ · 0.96^(t ψ)),    Π_t = Π_{t-1} μ_t   (Π_0 = 1)
    m_t = β1 m_{t-1} + (1 − β1) g_t,  s_t = β2 s_{t-1} + (1 − β2) g_t²
    d_t = √(s_t / (1 − β2^t)) + ε
    w_t = w_{t-1} − α (1 − μ_t)/(1 − Π_t) · g_t/d_t − α μ_{t+1}/(1 − Π_t μ_{t+1}) · m_t/d_t

Π is kept in the state per element (``mu_prod``: a learned, scheduled β1 makes it vary), where torch
keeps one number per tensor. Each of the two steps is one fused ``addcdiv``
(:func:`~hypergradient.optim.base.sub_div`), bitwise the plain ``w - (c * x) / d``.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from .adam import moments
from ..base import Rule, safe_sqrt, sub_div, zeros_like_all


class NAdamState(NamedTuple):
    exp_avg: tuple[torch.Tensor, ...]     # m_t
    exp_avg_sq: tuple[torch.Tensor, ...]  # s_t
    mu_prod: tuple[torch.Tensor, ...]     # Π_t


@register_optimizer
class NAdam(Rule):
    elementwise = True
    name = "nadam"
    torch_class = "NAdam"
    hparam_names = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum_decay")
    defaults = {"lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3}
    tuples = {"betas": ("beta1", "beta2")}
    decoupled_weight_decay: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "decoupled_weight_decay": False}

    def init(self, params: Sequence[torch.Tensor]) -> NAdamState:
        return NAdamState(zeros_like_all(params), zeros_like_all(params), tuple(torch.ones_like(p) for p in params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, b1, b2, psi, wd = c["lr"], c["beta1"], c["beta2"], c["momentum_decay"], c["weight_decay"]
        m0, s0, prod0 = s
        p, g = self.weight_decay(o, p, g, lr, wd)
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = prod0 * mu
        m, v = moments(g, m0, s0, b1, b2)
        denom = safe_sqrt(v / (1 - b2 ** t)) + c["eps"]
        p = sub_div(p, lr * (1.0 - mu) / (1.0 - prod), g, denom)              # fused, bitwise plain
        p = sub_div(p, lr * mu_next / (1.0 - prod * mu_next), m, denom)
        return p, (m, v, prod)
