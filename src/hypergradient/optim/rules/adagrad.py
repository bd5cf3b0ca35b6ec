"""Adagrad (``torch.optim.Adagrad``).

For each parameter tensor, with lr α, learning-rate decay κ, weight decay μ, ε::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    α_t = α / (1 + (t − 1) κ)
    S_t = S_{t-1} + g_t²                       (S_0 = initial_accumulator_value)
    w_t = w_{t-1} − α_t g_t / (√S_t + ε)

(Duchi, Hazan & Singer 2011.) The step is not fused: it stays higher's association α_t·(g/(√S + ε)),
bitwise ``higher``'s Adagrad (:mod:`hypergradient.higher` promises higher's numbers), which no fused op
computes (``addcdiv`` is (α_t·g)/d: :func:`~hypergradient.optim.base.sub_div`). Why it matters: where a
gradient is rounding noise of a direction the loss does not see (a bias before BatchNorm: |g| ~ 1e-17),
√S + ε ≈ ε and the step amplifies a one-ulp change of the other weights by α/ε (1e9 at α = 0.1, ε = 1e-10):
fused, that bias moved 2.7e-8 (float64) away from higher's after two steps, while the loss and the
meta-gradients stayed within 4e-15 (tests/test_higher_compat.py).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from ..base import Rule, safe_sqrt


class AdagradState(NamedTuple):
    sum: tuple[torch.Tensor, ...]  # S_t, accumulated squared gradients


@register_optimizer
class Adagrad(Rule):
    elementwise = True
    name = "adagrad"
    torch_class = "Adagrad"
    hparam_names = ("lr", "lr_decay", "weight_decay", "eps")
    defaults = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "eps": 1e-10}
    initial_accumulator_value: float  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "initial_accumulator_value": 0.0}

    def init(self, params: Sequence[torch.Tensor]) -> AdagradState:
        return AdagradState(tuple(torch.full_like(p, self.initial_accumulator_value) for p in params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        g = self.decay(o, g, p, c["weight_decay"])
        clr = c["lr"] / (1 + (t - 1) * c["lr_decay"])
        acc = s[0] + g * g
        return p - clr * (g / (safe_sqrt(acc) + c["eps"])), (acc,)      # higher's association (docstring)
