"""RAdam (``torch.optim.RAdam``; Liu et al. 2020, Algorithm 2): Adam with a rectified adaptive step.

For each parameter tensor, with β1, β2, ε, weight decay μ and lr α (t = 1, 2, ...)::

    coupled:  g_t = ∇L(w_{t-1}) + μ w_{t-1}            decoupled:  w_{t-1} ← (1 − α μ) w_{t-1}
    m_t, s_t as Adam;   m̂_t = m_t / (1 − β1^t)
    ρ∞ = 2/(1 − β2) − 1,   ρ_t = ρ∞ − 2 t β2^t / (1 − β2^t)
    ρ_t > 5:  r_t = √((ρ_t − 4)(ρ_t − 2) ρ∞ / ((ρ∞ − 4)(ρ∞ − 2) ρ_t)),
              w_t = w_{t-1} − α m̂_t · √(1 − β2^t)/(√s_t + ε) · r_t
    else:     w_t = w_{t-1} − α m̂_t

With a learned (tensor) β2 the test ρ_t > 5 is taken element by element. With a number β2 the rectified
step is one fused ``addcdiv`` (:func:`~hypergradient.optim.base.sub_div`), bitwise the plain
``w - (c * m) / (√s_t + ε)`` with c = α √(1 − β2^t) r_t / (1 − β1^t).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from .adam import moments, sqrt
from ..base import Rule, is_number, safe_sqrt, sub_div, zeros_like_all


class RAdamState(NamedTuple):
    exp_avg: tuple[torch.Tensor, ...]     # m_t
    exp_avg_sq: tuple[torch.Tensor, ...]  # s_t


@register_optimizer
class RAdam(Rule):
    elementwise = True
    name = "radam"
    torch_class = "RAdam"
    hparam_names = ("lr", "beta1", "beta2", "eps", "weight_decay")
    defaults = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    tuples = {"betas": ("beta1", "beta2")}
    decoupled_weight_decay: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "decoupled_weight_decay": False}

    def init(self, params: Sequence[torch.Tensor]) -> RAdamState:
        return RAdamState(zeros_like_all(params), zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, b1, b2, wd = c["lr"], c["beta1"], c["beta2"], c["weight_decay"]
        p, g = self.weight_decay(o, p, g, lr, wd)
        m, v = moments(g, s[0], s[1], b1, b2)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2 ** t) / bc2

        def rect(rho: Any) -> Any:
            return sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        if is_number(rho_t):    # a number β2: c = α √(1 − β2^t) r_t / (1 − β1^t), one fused addcdiv
            if rho_t > 5.0:
                return sub_div(p, lr * sqrt(bc2) * rect(rho_t) / bc1, m, safe_sqrt(v) + c["eps"]), (m, v)
            return p - (lr / bc1) * m, (m, v)
        # element by element; the rectified branch is evaluated at ρ = 6 where it is not taken
        on = rho_t > 5.0
        adaptive = sqrt(bc2) / (safe_sqrt(v) + c["eps"]) * rect(torch.where(on, rho_t, 6.0))
        return p - m / bc1 * lr * torch.where(on, adaptive, 1.0), (m, v)
