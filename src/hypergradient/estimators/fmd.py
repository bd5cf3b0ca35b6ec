"""Forward-mode hypergradient (FMD; Franceschi et al. 2017, Forward-HG): carry the tangent forward.

With s = (w, optimizer state), A_t = ∂Φ/∂s and B_t = ∂Φ/∂λ at step t (HyperDistill paper Eq. 3 read
from left to right; ALGORITHMS.md §2)::

    Z_0 = 0,   Z_t = A_t Z_{t-1} + B_t,   dL_val/dλ = ∂L_val/∂λ + α_T Z_T,   α_T = ∂L_val/∂w_T

Z_t = ds_t/dλ has one column per scalar entry of λ (N columns). Generic path: one batched JVP of Φ
per step (:meth:`InnerProblem.jvp`, the N columns vmapped), for any optimizer, schedules included.
Memory O(N·|s|), constant in T; cost N JVPs per step. Online: α_t Z_t is a valid hypergradient at
every t (when λ moves between steps, Z carries the past as in real-time recurrent learning).

Closed form for SGD with momentum and coupled weight decay (non-greedy paper, Appendix A), in
PyTorch's convention g_t = ∇L(w_{t-1}) + μ w_{t-1}, v_t = β v_{t-1} + g_t, w_t = w_{t-1} − α v_t,
with C = dv/dλ and H_t the training Hessian at w_{t-1}::

    C_t = β C_{t-1} + H_t Z_{t-1} + μ Z_{t-1} + β' v_{t-1} + μ' w_{t-1}
    Z_t = Z_{t-1} − α C_t − α' v_t

where α', β', μ' are the derivatives of step t's lr, momentum and weight decay with respect to each
column (a schedule's active value and a positivity transform included). It spends one batched HVP per
step instead of a batched JVP of the whole step. The recursion is the optimizer's own
(:meth:`hypergradient.core.optimizer.Optimizer.tangent_update`; SGD offers it): used with
``closed_form=True``, or automatically (``None``) where the optimizer offers one for what λ holds (SGD
without Nesterov or dampening, λ only lr / momentum / weight_decay). Clipping trap (ALGORITHMS.md
§2): our optimizers do not clip gradients; the generic path is a JVP of the whole map Φ, so a clip
mask M inside Φ would still give the exact M·H·z.

    >>> hg = estimate("fmd", problem, lam, T=1000)          # lam with a few entries
"""

from __future__ import annotations

import torch

from ..core.state import State
from ..core.tree import detached, zeros_like
from .base import Estimator, register
from .shared import result


def columns(lam) -> dict:
    """ζ: the identity over λ's N scalar entries, as a dict of (N, *shape) tangents."""
    v0 = next(iter(lam.values()))
    n = sum(v.numel() for v in lam.values())
    eye, out, o = torch.eye(n, dtype=v0.dtype, device=v0.device), {}, 0
    for k, v in lam.items():
        out[k] = eye[:, o:o + v.numel()].reshape(n, *v.shape)
        o += v.numel()
    return out


def contract(alpha, Z, lam) -> dict:
    """α · Z over the weights, split back into λ's structure."""
    col = sum((z * a).reshape(z.shape[0], -1).sum(1) for a, z in zip(alpha, Z))
    out, o = {}, 0
    for k, v in lam.items():
        out[k] = col[o:o + v.numel()].reshape(v.shape)
        o += v.numel()
    return out


def closed_form_blocker(problem, lam) -> str | None:
    """Why the optimizer's closed-form tangent rule does not apply (None when it does)."""
    opt, spec = problem.optimizer, problem.spec
    why = opt.tangent_blocker(set(spec.specs), spec.constants)
    if why:
        return why
    other = [k for k in lam if not (k.startswith("optim.") and k[6:].split("[")[0] in opt.tangent_hparams)]
    if other:
        return f"λ holds {other}; the closed form covers only optimizer {' / '.join(opt.tangent_hparams)}"
    return None


def coefficient_tangents(problem, lam, cols, t, cache):
    """{name: [per parameter: (N, ...) derivative of the step-t coefficient w.r.t. each column, or None]}
    for the optimizer's ``tangent_hparams``: a batched JVP of the (cheap) map λ ↦ step-t coefficients,
    by double backward."""
    spec, names = problem.spec, problem.optimizer.tangent_hparams
    key = spec.window(t)
    if cache is not None and key in cache:
        return cache[key]
    lam_d = detached(lam, requires_grad=True)
    tan: dict[int, torch.Tensor] = {}
    with torch.enable_grad():
        vals = spec.coefficients(lam_d, t)
        xs = list({id(x): x for name in names for x in vals[name]
                   if isinstance(x, torch.Tensor) and x.requires_grad}.values())
        if xs:
            us = [torch.zeros_like(x, requires_grad=True) for x in xs]
            g = torch.autograd.grad(xs, list(lam_d.values()), us, create_graph=True, allow_unused=True)
            pairs = [(gi, cols[k]) for gi, k in zip(g, lam_d) if gi is not None and gi.requires_grad]
            jv = torch.autograd.grad([p[0] for p in pairs], us, [p[1] for p in pairs], is_grads_batched=True,
                                     allow_unused=True)
            tan = {id(x): j for x, j in zip(xs, jv) if j is not None}
    out = {name: [tan.get(id(x)) if isinstance(x, torch.Tensor) else None for x in vals[name]] for name in names}
    if cache is not None:
        cache[key] = out
    return out


def closed_form_step(problem, lam, state: State, carry: dict) -> State:
    """One step and the optimizer's closed-form update of (Z, C) over the weights; counts 1 step, N HVPs."""
    t, Z, C, N = state.t + 1, carry["Z"], carry["C"], carry["N"]
    params, grads, buffers = problem.train_grad(state.detach(), lam, t, create_graph=Z is not None)
    with torch.enable_grad():
        hz = [None] * len(params)
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if Z is not None and live:
            out = torch.autograd.grad([grads[i] for i in live], params, [Z[i] for i in live],
                                      is_grads_batched=True, allow_unused=True)
            hz = list(out)
    problem.cost.steps += 1
    problem.cost.hvps += N if Z is not None else 0
    grads = tuple(g.detach() for g in grads)
    coef = problem.spec.coefficients(lam, t)
    with torch.no_grad():
        new_p, new_opt = problem.optimizer.update(grads, state.opt, state.params, coef, t)
        dcoef = coefficient_tangents(problem, lam, carry["cols"], t, carry["cache"])
        newZ, newC = problem.optimizer.tangent_update((Z, C), hz, dcoef, coef, grads, state.params, state.opt,
                                                      new_opt, t, N)
    carry["Z"], carry["C"] = newZ, newC
    return State(tuple(new_p), new_opt, buffers, t)


def generic_step(problem, lam, state: State, carry: dict) -> State:
    """One step and Z ← A Z + B over the full state by one batched JVP of Φ (N JVPs)."""
    state, carry["Z"] = problem.jvp(state, lam, carry["Z"], carry["cols"], batched=True)
    return state


@register
class FMD(Estimator):
    """Exact forward mode: one batched JVP per step, or the optimizer's closed-form tangent rule.

    ``closed_form``: None (the optimizer's closed-form tangent rule where it applies, e.g. SGD with
    lr / momentum / weight decay), True (require it) or False (always the generic batched JVP)."""

    name = "fmd"
    exact = True
    online = True
    memory = "O(N·|s|), constant in T"

    def __init__(self, closed_form: bool | None = None):
        if closed_form not in (None, True, False):
            raise ValueError(f"closed_form must be None, True or False, got {closed_form!r}")
        self.closed_form = closed_form

    def _carry(self, problem, lam, offline: bool) -> dict:
        why = closed_form_blocker(problem, lam)
        if self.closed_form and why:
            raise ValueError(f"fmd closed_form=True does not apply: {why}; use closed_form=None")
        fast = why is None and self.closed_form is not False
        cols = columns(lam)
        return {"Z": None, "C": None, "cols": cols, "N": next(iter(cols.values())).shape[0],
                "step": closed_form_step if fast else generic_step, "cache": {} if offline else None}

    def _held(self, carry, state) -> int:
        held = [z for z in (carry["Z"] or []) + (carry["C"] or []) + list(carry["cols"].values())]
        return state.nbytes() + sum(x.numel() * x.element_size() for x in held)

    def estimate(self, problem, lam, T, state):
        carry = self._carry(problem, lam, offline=True)
        for _ in range(T):
            state = carry["step"](problem, lam, state, carry)
        loss, alpha, direct = problem.val_grad(state, lam)
        indirect = contract(alpha, carry["Z"], lam) if carry["Z"] is not None else zeros_like(lam)
        return direct, indirect, {"val_loss": loss, "state": state, "stored_bytes": self._held(carry, state),
                                  "closed_form": carry["step"] is closed_form_step}

    def online_init(self, problem, lam, state):
        return self._carry(problem, detached(lam), offline=False)

    def online_step(self, problem, lam, state, carry):
        lam, before = detached(lam), problem.cost.copy()
        state = carry["step"](problem, lam, state, carry)
        loss, alpha, direct = problem.val_grad(state, lam)
        indirect = contract(alpha, carry["Z"], lam)
        info = {"val_loss": loss, "stored_bytes": self._held(carry, state)}
        return state, result(problem, before, direct, indirect, info, self.name), carry
