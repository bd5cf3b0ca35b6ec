"""RMSprop, centered and with momentum (``torch.optim.RMSprop``).

For each parameter tensor, with smoothing a (``alpha``), ε, weight decay μ, momentum β, lr α::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    s_t = a s_{t-1} + (1 − a) g_t²
    centered:  ḡ_t = a ḡ_{t-1} + (1 − a) g_t,   d_t = √(s_t − ḡ_t²) + ε;   else d_t = √s_t + ε
    momentum:  b_t = β b_{t-1} + g_t / d_t,      w_t = w_{t-1} − α b_t;     else w_t = w_{t-1} − α g_t / d_t

(Hinton's lecture 6e; Graves 2013 for the centered form.) Fused, each bitwise its plain form: the
step without momentum is one ``addcdiv`` (``w - (α * g) / d``), the momentum buffer one ``addcdiv``
(``β * b + g / d``); :mod:`hypergradient.optim.base`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from ..base import Rule, add_div, is_zero, safe_sqrt, sub_div, zeros_like_all


class RMSpropState(NamedTuple):
    square_avg: tuple[torch.Tensor, ...]       # s_t
    grad_avg: tuple[torch.Tensor, ...]         # ḡ_t (centered only; empty otherwise)
    momentum_buffer: tuple[torch.Tensor, ...]  # b_t (stays zero while momentum is the constant 0)


@register_optimizer
class RMSprop(Rule):
    elementwise = True
    name = "rmsprop"
    torch_class = "RMSprop"
    hparam_names = ("lr", "alpha", "eps", "weight_decay", "momentum")
    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}
    centered: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "centered": False}

    def init(self, params: Sequence[torch.Tensor]) -> RMSpropState:
        return RMSpropState(zeros_like_all(params), zeros_like_all(params) if self.centered else (),
                            zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, a, eps, mom = c["lr"], c["alpha"], c["eps"], c["momentum"]
        sq0, ga0, b0 = s
        g = self.decay(o, g, p, c["weight_decay"])
        sq = a * sq0 + (1 - a) * (g * g)
        ga = a * ga0 + (1 - a) * g if self.centered else None
        d = safe_sqrt(sq - ga * ga if ga is not None else sq) + eps
        if is_zero(mom):
            return sub_div(p, lr, g, d), (sq, ga, b0)       # fused, bitwise plain
        b = add_div(mom * b0, g, d)                        # fused, bitwise plain
        return p - lr * b, (sq, ga, b)
