"""Adamax (``torch.optim.Adamax``): Adam with the infinity norm.

For each parameter tensor, with β1, β2, ε, weight decay μ and lr α (Kingma & Ba 2015, Algorithm 2,
with torch's ε inside the max)::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    m_t = β1 m_{t-1} + (1 − β1) g_t
    u_t = max(β2 u_{t-1}, |g_t| + ε)
    w_t = w_{t-1} − α/(1 − β1^t) · m_t / u_t

The step is not fused: it stays higher's association α/(1 − β1^t)·(m/u), bitwise ``higher``'s Adamax
(as for :mod:`~hypergradient.optim.rules.adagrad`: ``addcdiv`` computes (c·m)/u, and where g is rounding
noise u ≈ ε amplifies that one-ulp difference by α/ε; fused, 1.3e-10 off higher's weights in
tests/test_higher_compat.py).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from ..base import Rule, zeros_like_all


class AdamaxState(NamedTuple):
    exp_avg: tuple[torch.Tensor, ...]  # m_t
    exp_inf: tuple[torch.Tensor, ...]  # u_t, the exponentially weighted infinity norm


@register_optimizer
class Adamax(Rule):
    elementwise = True
    name = "adamax"
    torch_class = "Adamax"
    hparam_names = ("lr", "beta1", "beta2", "eps", "weight_decay")
    defaults = {"lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    tuples = {"betas": ("beta1", "beta2")}

    def init(self, params: Sequence[torch.Tensor]) -> AdamaxState:
        return AdamaxState(zeros_like_all(params), zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        b1, b2 = c["beta1"], c["beta2"]
        m0, u0 = s
        g = self.decay(o, g, p, c["weight_decay"])
        m = b1 * m0 + (1 - b1) * g
        u = torch.maximum(b2 * u0, g.abs() + c["eps"])
        return p - (c["lr"] / (1 - b1 ** t)) * (m / u), (m, u)      # higher's association (docstring)
