"""SGD with momentum, dampening, Nesterov and coupled weight decay (``torch.optim.SGD``).

PyTorch's convention, for each parameter tensor (t = 1, 2, ...)::

    g_t = ∇L(w_{t-1}) + μ w_{t-1}                       (weight_decay μ)
    v_t = g_t                          if t = 1
    v_t = β v_{t-1} + (1 − d) g_t      otherwise        (momentum β, dampening d)
    u_t = g_t + β v_t  if nesterov else v_t
    w_t = w_{t-1} − α u_t                                (lr α)

This is the recursion of the non-greedy paper, Appendix A (with v_0 = 0 and d = 0 the first-step
special case coincides with the general one). ∇L here is the gradient after the optimizer's
transforms (``clip``, then the sign of ``maximize``; :meth:`~hypergradient.core.optimizer.Optimizer.transform`),
which forward mode's closed form follows through their Jacobian J_T.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, NamedTuple, Sequence, cast

import torch

from ...core.optimizer import Coefficients, register_optimizer
from ..base import Rule, is_zero, zeros_like_all


class SGDState(NamedTuple):
    momentum_buffer: tuple[torch.Tensor, ...]  # v_{t}: one tensor per parameter (zeros before the first step)


@register_optimizer
class SGD(Rule):
    elementwise = True
    foreach = True      # the rule below runs per tensor or as torch._foreach_* ops (optim/base.py)
    name = "sgd"
    torch_class = "SGD"
    hparam_names = ("lr", "momentum", "dampening", "weight_decay")
    defaults = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}
    nesterov: bool  # an option (static_defaults), set by Optimizer.__init__

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {**super().static_defaults(), "nesterov": False}

    def check_values(self, values: Mapping[str, tuple[float, float]]) -> None:
        super().check_values(values)
        momentum, dampening = values.get("momentum", (1.0, 1.0)), values.get("dampening", (0.0, 0.0))
        if self.nesterov and (momentum[0] <= 0 or dampening != (0.0, 0.0)):      # (absent: opted out)
            raise ValueError("SGD(nesterov=True) needs momentum > 0 and dampening = 0 (torch.optim.SGD rejects "
                             "anything else); set momentum, or drop nesterov")

    def init(self, params: Sequence[torch.Tensor]) -> SGDState:
        return SGDState(zeros_like_all(params))

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        lr, mom, damp = c["lr"], c["momentum"], c["dampening"]
        g = self.decay(o, g, p, c["weight_decay"])
        buf, = s
        if o.zero(mom) and not self.nesterov:
            v, u = buf, g                     # no momentum: the buffer is not in use
        else:
            if t == 1:
                v = g
            elif o.zero(damp):
                v = o.axpy(g, mom, buf)
            else:
                v = o.axpy(o.mul(buf, mom), o.one_minus(damp), g)
            u = o.axpy(g, mom, v) if self.nesterov else v
        return o.descend(p, lr, u), (v,)

    # ---- forward mode's closed form (non-greedy paper, Appendix A; estimators/fmd.py) ----------------
    tangent_hparams = ("lr", "momentum", "weight_decay")

    def tangent_blocker(self, learned: Collection[str], constants: Mapping[str, Collection[float]]) -> str | None:
        if self.nesterov:
            return "Nesterov momentum is not covered"
        if "dampening" in learned or any(v != 0 for v in constants.get("dampening", (0.0,))):
            return "dampening must be the constant 0"
        return None     # clip and maximize: the rule sees T(g) and J_T H Z (Primitives.step_hvp)

    def tangent_update(self, tangents: tuple[Sequence[torch.Tensor] | None, Sequence[torch.Tensor] | None],
                       hz: Sequence[torch.Tensor | None], dcoef: Mapping[str, Sequence[torch.Tensor | None]],
                       coef: Coefficients, grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                       opt: SGDState, new_opt: SGDState, t: int, N: int
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Z_t = Z_{t-1} − α C_t − α' u_t with
        C_t = β C_{t-1} + J_T H_t Z_{t-1} + μ Z_{t-1} + β' v_{t-1} + μ' w_{t-1} (C = dv/dλ; the momentum
        terms only where the momentum buffer is in use, as in :meth:`update`), per parameter tensor;
        ``tangents`` = (Z, C), ``hz`` = J_T H_t Z_{t-1} (None entries: zero) and ``grads`` = g̃ = T(g),
        the gradient after the clips and the sign of ``maximize``: the step is g_t = g̃ + μ w_{t-1} with
        dg̃/dλ = J_T(g) H_t Z_{t-1} (J_T = I without transforms)."""
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

