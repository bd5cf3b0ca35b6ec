"""Adam and AdamW, with amsgrad (``torch.optim.Adam`` / ``torch.optim.AdamW``).

For each parameter tensor, with β1, β2, ε, weight decay μ and lr α (t = 1, 2, ...)::

    Adam:  g_t = ∇L(w_{t-1}) + μ w_{t-1}          AdamW:  w_{t-1} ← (1 − α μ) w_{t-1}
    m_t = β1 m_{t-1} + (1 − β1) g_t
    s_t = β2 s_{t-1} + (1 − β2) g_t²               (amsgrad: ŝ_t = max(ŝ_{t-1}, s_t), used below)
    w_t = w_{t-1} − α/(1 − β1^t) · m_t / (√s_t / √(1 − β2^t) + ε)

(Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019 for the decoupled decay.) The square root
has a finite derivative at 0 (:func:`safe_sqrt`), so second-order hypergradients stay finite.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import torch

from ..core.optimizer import Coefficient, Coefficients, register_optimizer
from .base import Optimizer, is_zero, safe_sqrt, zeros_like_all


class AdamState(NamedTuple):
    exp_avg: tuple[torch.Tensor, ...]         # m_t, first moment
    exp_avg_sq: tuple[torch.Tensor, ...]      # s_t, second moment
    max_exp_avg_sq: tuple[torch.Tensor, ...]  # ŝ_t, running max of s_t (amsgrad only; empty otherwise)


def _pow(b: Coefficient, t: int) -> Coefficient:
    return b ** t


def _sqrt(x: Coefficient) -> Coefficient:
    return math.sqrt(x) if isinstance(x, (int, float)) else torch.sqrt(x)


@register_optimizer
class Adam(Optimizer):
    elementwise = True
    name = "adam"
    torch_class = "Adam"
    decoupled = False
    hparam_names = ("lr", "beta1", "beta2", "eps", "weight_decay")
    defaults = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    amsgrad: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {"amsgrad": False}

    def init(self, params: Sequence[torch.Tensor]) -> AdamState:
        return AdamState(zeros_like_all(params), zeros_like_all(params),
                         zeros_like_all(params) if self.amsgrad else ())

    def update(self, grads: Sequence[torch.Tensor], state: AdamState, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], AdamState]:
        lr, b1, b2, eps, wd = coef["lr"], coef["beta1"], coef["beta2"], coef["eps"], coef["weight_decay"]
        out_p, out_m, out_s, out_max = [], [], [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not is_zero(wd[i]):
                if self.decoupled:
                    p = p * (1 - lr[i] * wd[i])
                else:
                    g = g + wd[i] * p
            m = b1[i] * state.exp_avg[i] + (1 - b1[i]) * g
            s = b2[i] * state.exp_avg_sq[i] + (1 - b2[i]) * (g * g)
            if self.amsgrad:
                smax = torch.maximum(state.max_exp_avg_sq[i], s)
                out_max.append(smax)
            else:
                smax = s
            bc1 = 1 - _pow(b1[i], t)
            bc2_sqrt = _sqrt(1 - _pow(b2[i], t))
            denom = safe_sqrt(smax) / bc2_sqrt + eps[i]
            out_p.append(p - (lr[i] / bc1) * (m / denom))
            out_m.append(m)
            out_s.append(s)
        return tuple(out_p), AdamState(tuple(out_m), tuple(out_s), tuple(out_max))


@register_optimizer
class AdamW(Adam):
    name = "adamw"
    torch_class = "AdamW"
    decoupled = True
    defaults = {**Adam.defaults, "weight_decay": 1e-2}
