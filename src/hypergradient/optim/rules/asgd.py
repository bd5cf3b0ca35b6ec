"""Averaged SGD (``torch.optim.ASGD``; Polyak & Juditsky 1992, with Bottou's step-size decay).

For each parameter tensor, with lr α, decay λ (``lambd``), power a (``alpha``), averaging start t0 and
weight decay μ; step t uses the step size and averaging weight left by step t − 1::

    η_{t-1} = α / (1 + λ α (t − 1))^a          μ_{t-1} = 1 / max(1, t − 1 − t0)
    g_t = ∇L(w_{t-1}) + μ w_{t-1}
    w_t = (1 − λ η_{t-1}) w_{t-1} − η_{t-1} g_t
    ā_t = w_t if μ_{t-1} = 1, else ā_{t-1} + μ_{t-1} (w_t − ā_{t-1})

ā (``ax``) is the averaged iterate, kept in the state (the trajectory itself is w). t0 is a step count,
an option rather than a learnable hyperparameter.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import register_optimizer
from ..base import Rule, axpy, zeros_like_all


class ASGDState(NamedTuple):
    ax: tuple[torch.Tensor, ...]  # ā_t, the averaged iterate


@register_optimizer
class ASGD(Rule):
    elementwise = True
    name = "asgd"
    torch_class = "ASGD"
    hparam_names = ("lr", "lambd", "alpha", "weight_decay")
    defaults = {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "weight_decay": 0.0}
    t0: float  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "t0": 1e6}

    def init(self, params: Sequence[torch.Tensor]) -> ASGDState:
        return ASGDState(zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, lambd = c["lr"], c["lambd"]
        eta = lr / ((1 + lambd * lr * (t - 1)) ** c["alpha"])
        mu = 1 / max(1, t - 1 - self.t0)
        g = self.decay(o, g, p, c["weight_decay"])
        w = axpy(p * (1 - lambd * eta), -eta, g)
        ax = w if mu == 1 else s[0] + (w - s[0]) * mu
        return w, (ax,)
