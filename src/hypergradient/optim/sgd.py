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

import torch

from .base import (Optimizer, _is_number, axpy, faxpy, fmul, foreach_ok, is_zero, same_zero, shared_number,
                   zeros_like_all)


class SGDState(NamedTuple):
    momentum_buffer: tuple  # v_{t}: one tensor per parameter (zeros before the first step)


class SGD(Optimizer):
    elementwise = True
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
        if foreach_ok((params, grads, state.momentum_buffer), (lr, mom, damp, wd)):
            out = self._update_foreach(grads, state, params, lr, mom, damp, wd, t)
            if out is not None:
                return out
        new_p, new_v = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not is_zero(wd[i]):
                g = axpy(g, wd[i], p)
            if is_zero(mom[i]) and not self.nesterov:
                v = state.momentum_buffer[i]
                u = g
            else:
                if t == 1:
                    v = g
                elif is_zero(damp[i]):
                    v = axpy(g, mom[i], state.momentum_buffer[i])
                else:
                    v = axpy(mom[i] * state.momentum_buffer[i], 1 - damp[i], g)
                u = axpy(g, mom[i], v) if self.nesterov else v
            new_p.append(_descend(p, lr[i], u))
            new_v.append(v)
        return tuple(new_p), SGDState(tuple(new_v))

    def _update_foreach(self, grads, state, params, lr, mom, damp, wd, t):
        """The loop above with one ``torch._foreach_*`` call per operation (same arithmetic, same
        order, bitwise the same result); None when the per-tensor branches would differ."""
        wd_zero, mom_zero, damp_zero = same_zero(wd), same_zero(mom), same_zero(damp)
        if wd_zero is None or mom_zero is None or damp_zero is None or \
                any(shared_number(h) is None for h in (lr, mom, damp, wd)):
            return None
        g = list(grads)
        if not wd_zero:
            g = faxpy(g, wd, params)
        if mom_zero and not self.nesterov:
            v = list(state.momentum_buffer)
            u = g
        else:
            if t == 1:
                v = g
            elif damp_zero:
                v = faxpy(g, mom, state.momentum_buffer)
            else:
                v = faxpy(fmul(state.momentum_buffer, mom), [1 - d for d in damp], g)
            u = faxpy(g, mom, v) if self.nesterov else v
        if shared_number(lr):
            new_p = torch._foreach_add(list(params), u, alpha=-lr[0])
        else:
            new_p = torch._foreach_addcmul(list(params), list(lr), u, value=-1)
        return tuple(new_p), SGDState(tuple(v))


def _descend(p: torch.Tensor, lr, u: torch.Tensor) -> torch.Tensor:
    """p − lr·u as one op: ``add(alpha=−lr)`` for a number, ``addcmul`` for a tensor lr."""
    return torch.add(p, u, alpha=-lr) if _is_number(lr) else torch.addcmul(p, lr, u, value=-1)
