"""TEMPORARY: the SGD before issue 13 (git show 091eabf:src/hypergradient/optim/sgd.py), kept only
until test_fast_paths shows the rewritten SGD bitwise equal to it; then deleted."""


from __future__ import annotations

from typing import Any, Collection, Mapping, NamedTuple, Sequence, cast

import torch

from hypergradient.core.optimizer import Coefficient, Coefficients
from hypergradient.optim.base import (Optimizer, axpy, faxpy, fmul, foreach_ok, is_number, is_zero, same_zero,
                                      shared_number, zeros_like_all)


class SGDState(NamedTuple):
    momentum_buffer: tuple[torch.Tensor, ...]  # v_{t}: one tensor per parameter (zeros before the first step)


class SGD(Optimizer):
    elementwise = True
    name = "sgd"
    torch_class = "SGD"
    hparam_names = ("lr", "momentum", "dampening", "weight_decay")
    defaults = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}
    nesterov: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {"maximize": False, "nesterov": False}

    def check_values(self, values: Mapping[str, tuple[float, float]]) -> None:
        super().check_values(values)
        momentum, dampening = values.get("momentum", (1.0, 1.0)), values.get("dampening", (0.0, 0.0))
        if self.nesterov and (momentum[0] <= 0 or dampening != (0.0, 0.0)):      # (absent: opted out)
            raise ValueError("SGD(nesterov=True) needs momentum > 0 and dampening = 0 (torch.optim.SGD rejects "
                             "anything else); set momentum, or drop nesterov")

    def init(self, params: Sequence[torch.Tensor]) -> SGDState:
        return SGDState(zeros_like_all(params))

    def update(self, grads: Sequence[torch.Tensor], state: SGDState, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], SGDState]:
        lr, mom, damp, wd = coef["lr"], coef["momentum"], coef["dampening"], coef["weight_decay"]
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

    def _update_foreach(self, grads: Sequence[torch.Tensor], state: SGDState, params: Sequence[torch.Tensor],
                        lr: Sequence[Coefficient], mom: Sequence[Coefficient], damp: Sequence[Coefficient],
                        wd: Sequence[Coefficient], t: int) -> tuple[tuple[torch.Tensor, ...], SGDState] | None:
        """The loop above with one ``torch._foreach_*`` call per operation (same arithmetic, same
        order, bitwise the same result); None when the per-tensor branches would differ."""
        wd_zero, mom_zero, damp_zero = same_zero(wd), same_zero(mom), same_zero(damp)
        if wd_zero is None or mom_zero is None or damp_zero is None or \
                any(shared_number(h) is None for h in (lr, mom, damp, wd)):
            return None
        g: list[torch.Tensor] | tuple[torch.Tensor, ...] = list(grads)
        if not wd_zero:
            g = faxpy(g, wd, params)
        if mom_zero and not self.nesterov:
            v: list[torch.Tensor] | tuple[torch.Tensor, ...] = list(state.momentum_buffer)
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
            new_p = torch._foreach_add(list(params), u, alpha=-cast(float, lr[0]))  # all one number
        else:
            new_p = torch._foreach_addcmul(list(params), list(cast(Sequence[torch.Tensor], lr)), u, value=-1)
        return tuple(new_p), SGDState(tuple(v))

    # ---- forward mode's closed form (non-greedy paper, Appendix A; estimators/fmd.py) ----------------
    tangent_hparams = ("lr", "momentum", "weight_decay")

    def tangent_blocker(self, learned: Collection[str], constants: Mapping[str, float]) -> str | None:
        if self.nesterov:
            return "Nesterov momentum is not covered"
        if "dampening" in learned or constants.get("dampening", 0.0) != 0:
            return "dampening must be the constant 0"
        return None

    def tangent_update(self, tangents: tuple[Sequence[torch.Tensor] | None, Sequence[torch.Tensor] | None],
                       hz: Sequence[torch.Tensor | None], dcoef: Mapping[str, Sequence[torch.Tensor | None]],
                       coef: Coefficients, grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                       opt: SGDState, new_opt: SGDState, t: int, N: int
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Z_t = Z_{t-1} − α C_t − α' u_t with C_t = β C_{t-1} + H_t Z_{t-1} + μ Z_{t-1} + β' v_{t-1} + μ' w_{t-1}
        (C = dv/dλ; the momentum terms only where the momentum buffer is in use, as in :meth:`update`),
        per parameter tensor; ``tangents`` = (Z, C), ``hz`` = H_t Z_{t-1} (None entries: zero)."""
        Z, C = tangents
        newZ, newC = [], []
        for i, w in enumerate(params):
            lr, mom, wd = coef["lr"][i], coef["momentum"][i], coef["weight_decay"][i]
            dlr, dmom, dwd = dcoef["lr"][i], dcoef["momentum"][i], dcoef["weight_decay"][i]
            c = torch.zeros((N, *w.shape), dtype=w.dtype, device=w.device)
            if Z is not None:
                if hz[i] is not None:
                    c = c + cast(torch.Tensor, hz[i])
                if not is_zero(wd):
                    c = c + wd * Z[i]
            if dwd is not None:
                c = c + _bcast(dwd, w) * w
            active = not is_zero(mom)  # the same test update makes
            if active and t > 1:
                if C is not None:
                    c = c + mom * C[i]
                if dmom is not None:
                    c = c + _bcast(dmom, w) * opt.momentum_buffer[i]
            u = new_opt.momentum_buffer[i] if active else (grads[i] if is_zero(wd) else grads[i] + wd * w)
            z = (Z[i] if Z is not None else 0) - lr * c
            if dlr is not None:
                z = z - _bcast(dlr, w) * u
            newZ.append(z)
            newC.append(c)
        return newZ, newC


def _bcast(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A (N, *coefficient shape) derivative broadcast against a (N, *w.shape) tangent."""
    return d if d.dim() - 1 == w.dim() else d.reshape(d.shape[0], *([1] * w.dim()))


def _descend(p: torch.Tensor, lr: Coefficient, u: torch.Tensor) -> torch.Tensor:
    """p − lr·u as one op: ``add(alpha=−lr)`` for a number, ``addcmul`` for a tensor lr."""
    return torch.add(p, u, alpha=-lr) if is_number(lr) else torch.addcmul(p, cast(torch.Tensor, lr), u, value=-1)
