"""RMSprop, centered and with momentum (``torch.optim.RMSprop``).

For each parameter tensor, with smoothing a (``alpha``), ε, weight decay μ, momentum β, lr α::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    s_t = a s_{t-1} + (1 − a) g_t²
    centered:  ḡ_t = a ḡ_{t-1} + (1 − a) g_t,   d_t = √(s_t − ḡ_t²) + ε;   else d_t = √s_t + ε
    momentum:  b_t = β b_{t-1} + g_t / d_t,      w_t = w_{t-1} − α b_t;     else w_t = w_{t-1} − α g_t / d_t

(Hinton's lecture 6e; Graves 2013 for the centered form.)
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from ..core.optimizer import Coefficients, register_optimizer
from .base import Optimizer, is_zero, safe_sqrt, zeros_like_all


class RMSpropState(NamedTuple):
    square_avg: tuple[torch.Tensor, ...]       # s_t
    grad_avg: tuple[torch.Tensor, ...]         # ḡ_t (centered only; empty otherwise)
    momentum_buffer: tuple[torch.Tensor, ...]  # b_t (stays zero while momentum is the constant 0)


@register_optimizer
class RMSprop(Optimizer):
    elementwise = True
    name = "rmsprop"
    torch_class = "RMSprop"
    hparam_names = ("lr", "alpha", "eps", "weight_decay", "momentum")
    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}
    centered: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {"centered": False}

    def init(self, params: Sequence[torch.Tensor]) -> RMSpropState:
        return RMSpropState(zeros_like_all(params), zeros_like_all(params) if self.centered else (),
                            zeros_like_all(params))

    def update(self, grads: Sequence[torch.Tensor], state: RMSpropState, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], RMSpropState]:
        lr, a, eps, wd, mom = coef["lr"], coef["alpha"], coef["eps"], coef["weight_decay"], coef["momentum"]
        out_p, out_s, out_ga, out_b = [], [], [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not is_zero(wd[i]):
                g = g + wd[i] * p
            s = a[i] * state.square_avg[i] + (1 - a[i]) * (g * g)
            if self.centered:
                ga = a[i] * state.grad_avg[i] + (1 - a[i]) * g
                d = safe_sqrt(s - ga * ga) + eps[i]
            else:
                d = safe_sqrt(s) + eps[i]
            if is_zero(mom[i]):
                b = state.momentum_buffer[i]
                p = p - lr[i] * (g / d)
            else:
                b = mom[i] * state.momentum_buffer[i] + g / d
                p = p - lr[i] * b
            out_p.append(p)
            out_s.append(s)
            if self.centered:
                out_ga.append(ga)
            out_b.append(b)
        return tuple(out_p), RMSpropState(tuple(out_s), tuple(out_ga), tuple(out_b))
