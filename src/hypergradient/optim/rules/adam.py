"""Adam and AdamW, with amsgrad (``torch.optim.Adam`` / ``torch.optim.AdamW``).

For each parameter tensor, with β1, β2, ε, weight decay μ and lr α (t = 1, 2, ...)::

    coupled:  g_t = ∇L(w_{t-1}) + μ w_{t-1}          decoupled:  w_{t-1} ← (1 − α μ) w_{t-1}
    m_t = β1 m_{t-1} + (1 − β1) g_t
    s_t = β2 s_{t-1} + (1 − β2) g_t²               (amsgrad: ŝ_t = max(ŝ_{t-1}, s_t), used below)
    w_t = w_{t-1} − α/(1 − β1^t) · m_t / (√s_t / √(1 − β2^t) + ε)

(Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019 for the decoupled decay, which AdamW is:
torch's ``AdamW`` is ``Adam(decoupled_weight_decay=True)`` with weight decay 1e-2 by default.) The
square root has a finite derivative at 0 (:func:`safe_sqrt`), so second-order hypergradients stay finite.
The step w − (α/(1 − β1^t)) m_t / d_t is one fused ``addcdiv`` (:func:`~hypergradient.optim.base.sub_div`),
bitwise the plain ``w - (c * m) / d``; the moments stay plain ops (torch's multiply-add forms round once,
as an FMA, on AVX CPUs: bitwise no plain form).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import Coefficient, register_optimizer
from ..base import Rule, safe_sqrt, sub_div, zeros_like_all


class AdamState(NamedTuple):
    exp_avg: tuple[torch.Tensor, ...]         # m_t, first moment
    exp_avg_sq: tuple[torch.Tensor, ...]      # s_t, second moment
    max_exp_avg_sq: tuple[torch.Tensor, ...]  # ŝ_t, running max of s_t (amsgrad only; empty otherwise)


def sqrt(x: Coefficient) -> Coefficient:
    """√x of a number or a tensor coefficient."""
    return math.sqrt(x) if isinstance(x, (int, float)) else torch.sqrt(x)


def moments(g: torch.Tensor, m: torch.Tensor, s: torch.Tensor, b1: Coefficient, b2: Coefficient
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's moment estimates m_t = β1 m + (1 − β1) g and s_t = β2 s + (1 − β2) g² (also Adamax's m,
    NAdam's and RAdam's m and s)."""
    return b1 * m + (1 - b1) * g, b2 * s + (1 - b2) * (g * g)


@register_optimizer
class Adam(Rule):
    elementwise = True
    name = "adam"
    torch_class = "Adam"
    hparam_names = ("lr", "beta1", "beta2", "eps", "weight_decay")
    defaults = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    tuples = {"betas": ("beta1", "beta2")}
    amsgrad: bool                  # options (static_defaults), set by Optimizer.__init__
    decoupled_weight_decay: bool

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "amsgrad": False, "decoupled_weight_decay": False}

    def init(self, params: Sequence[torch.Tensor]) -> AdamState:
        return AdamState(zeros_like_all(params), zeros_like_all(params),
                         zeros_like_all(params) if self.amsgrad else ())

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, b1, b2, eps, wd = c["lr"], c["beta1"], c["beta2"], c["eps"], c["weight_decay"]
        m0, s0, smax0 = s
        p, g = self.weight_decay(o, p, g, lr, wd)
        m, v = moments(g, m0, s0, b1, b2)
        smax = torch.maximum(smax0, v) if self.amsgrad else v
        denom = safe_sqrt(smax) / sqrt(1 - b2 ** t) + eps
        return sub_div(p, lr / (1 - b1 ** t), m, denom), (m, v, smax if self.amsgrad else None)  # fused, bitwise plain


@register_optimizer
class AdamW(Adam):
    name = "adamw"
    torch_class = "AdamW"
    defaults = {**Adam.defaults, "weight_decay": 1e-2}

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "decoupled_weight_decay": True}
