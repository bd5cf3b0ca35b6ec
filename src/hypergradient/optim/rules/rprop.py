"""Rprop (``torch.optim.Rprop``; Riedmiller & Braun 1993, the variant without weight backtracking).

For each parameter tensor, element by element, with the initial step size α (``lr``), factors
η− < 1 < η+ (``etas``) and step-size bounds [Δmin, Δmax] (``step_sizes``)::

    σ_t = sign(g_t · g'_{t-1})                      (g' the gradient as used at step t − 1; 0 at t = 1)
    Δ_t = clamp(Δ_{t-1} · (η+ if σ_t > 0, η− if σ_t < 0, 1 otherwise), Δmin, Δmax)      (Δ_0 = α)
    g'_t = 0 where σ_t < 0, g_t elsewhere
    w_t = w_{t-1} − sign(g'_t) Δ_t

Only the step sizes depend on the hyperparameters (sign has derivative 0), so hypergradients flow
through Δ: to α, η±, and Δmin / Δmax where the clamp is active.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...core.optimizer import Coefficient, register_optimizer
from ..base import Rule, is_number, zeros_like_all


class RpropState(NamedTuple):
    prev: tuple[torch.Tensor, ...]       # g'_t
    step_size: tuple[torch.Tensor, ...]  # Δ_t (zeros before the first step, which starts from lr)


def _clamp(x: torch.Tensor, lo: Coefficient, hi: Coefficient) -> torch.Tensor:
    if is_number(lo) and is_number(hi):
        return x.clamp(lo, hi)
    return torch.minimum(torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype, device=x.device)),
                         torch.as_tensor(hi, dtype=x.dtype, device=x.device))


@register_optimizer
class Rprop(Rule):
    elementwise = True
    name = "rprop"
    torch_class = "Rprop"
    hparam_names = ("lr", "etaminus", "etaplus", "step_size_min", "step_size_max")
    defaults = {"lr": 1e-2, "etaminus": 0.5, "etaplus": 1.2, "step_size_min": 1e-6, "step_size_max": 50.0}
    tuples = {"etas": ("etaminus", "etaplus"), "step_sizes": ("step_size_min", "step_size_max")}

    def init(self, params: Sequence[torch.Tensor]) -> RpropState:
        return RpropState(zeros_like_all(params), zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        prev, step0 = s
        step0 = torch.zeros_like(p) + c["lr"] if t == 1 else step0
        sign = (g * prev).sign()
        up, down = sign > 0, sign < 0
        factor = torch.where(up, c["etaplus"], torch.where(down, c["etaminus"], torch.ones_like(g)))
        step = _clamp(step0 * factor, c["step_size_min"], c["step_size_max"])
        g = torch.where(down, torch.zeros_like(g), g)
        return p - g.sign() * step, (g, step)
