"""SGD with momentum, dampening, Nesterov and coupled weight decay (``torch.optim.SGD``).

PyTorch's convention, for each parameter tensor (t = 1, 2, ...)::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}                       (weight_decay μ)
    v_t = g_t                          if t = 1
    v_t = β v_{t-1} + (1 − d) g_t      otherwise        (momentum β, dampening d)
    u_t = g_t + β v_t  if nesterov else v_t
    w_t = w_{t-1} − α u_t                                (lr α)

This is the recursion of the non-greedy paper, Appendix A (with v_0 = 0 and d = 0 the first-step
special case coincides with the general one).
"""

from __future__ import annotations

from typing import NamedTuple

from .base import Optimizer, is_zero, zeros_like_all


class SGDState(NamedTuple):
    momentum_buffer: tuple  # v_{t}: one tensor per parameter (zeros before the first step)


class SGD(Optimizer):
    name = "sgd"
    torch_class = "SGD"
    hparam_names = ("lr", "momentum", "dampening", "weight_decay")
    defaults = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}

    @classmethod
    def static_defaults(cls):
        return {"nesterov": False}

    def init(self, params):
        return SGDState(zeros_like_all(params))

    def update(self, grads, state, params, hp, t):
        lr, mom, damp, wd = hp["lr"], hp["momentum"], hp["dampening"], hp["weight_decay"]
        new_p, new_v = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not is_zero(wd[i]):
                g = g + wd[i] * p
            if is_zero(mom[i]) and not self.nesterov:
                v = state.momentum_buffer[i]
                u = g
            else:
                if t == 1:
                    v = g
                elif is_zero(damp[i]):
                    v = mom[i] * state.momentum_buffer[i] + g
                else:
                    v = mom[i] * state.momentum_buffer[i] + (1 - damp[i]) * g
                u = g + mom[i] * v if self.nesterov else v
            new_p.append(p - lr[i] * u)
            new_v.append(v)
        return tuple(new_p), SGDState(tuple(new_v))
