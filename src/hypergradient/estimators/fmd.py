"""Forward-mode hypergradient (FMD; Franceschi et al. 2017, Forward-HG): carry the tangent forward.

With s = (w, optimizer state), A_t = ∂Φ/∂s and B_t = ∂Φ/∂λ at step t (HyperDistill paper Eq. 3 read
from left to right; ALGORITHMS.md §2)::

    Z_0 = 0,   Z_t = A_t Z_{t-1} + B_t,   dL_val/dλ = ∂L_val/∂λ + α_T Z_T,   α_T = ∂L_val/∂w_T

Z_t = ds_t/dλ has one column per scalar entry of λ (N columns). Generic path: one batched JVP of Φ
per step (:meth:`InnerProblem.jvp`, the N columns vmapped), for any optimizer, schedules included.
Memory O(N·|s|), constant in T; cost N JVPs per step. Online: α_t Z_t is a valid hypergradient at
every t (when λ moves between steps, Z carries the past as in real-time recurrent learning).

Closed form for SGD with momentum and coupled weight decay (non-greedy paper, Appendix A), in
PyTorch's convention g_t = T(∇L(w_{t-1})) + μ w_{t-1}, v_t = β v_{t-1} + g_t, w_t = w_{t-1} − α v_t, with
T the optimizer's gradient transforms (its ``clip=`` in order, then the sign of ``maximize``; the
identity without; :meth:`~hypergradient.core.optimizer.Optimizer.transform`), J_T its Jacobian at
∇L(w_{t-1}), C = dv/dλ and H_t the training Hessian at w_{t-1}::

    P_t = J_T H_t Z_{t-1}
    C_t = β C_{t-1} + P_t + μ Z_{t-1} + β' v_{t-1} + μ' w_{t-1}
    Z_t = Z_{t-1} − α C_t − α' v_t

where α', β', μ' are the derivatives of step t's lr, momentum and weight decay with respect to each
column (a schedule's active value and a positivity transform included). It spends one batched HVP per
step (H_t Z by double backward: H is symmetric) and one cheap JVP of T alone instead of a batched JVP
of the whole step (:meth:`~hypergradient.core.primitives.Primitives.step_hvp`). The recursion is the
optimizer's own (:meth:`hypergradient.core.optimizer.Optimizer.tangent_update`; SGD offers it): used
with ``closed_form=True``, or automatically (``None``) where the optimizer offers one for what λ holds
(SGD without Nesterov or dampening, λ only lr / momentum / weight_decay, at any granularity, param
groups, clipping and ``maximize`` included). Clipping trap (ALGORITHMS.md §2): for a value clip J_T is
the mask M, and P_t = M·H·Z; a double backward through the clipped gradient would give H·M·Z. H·Z is
taken first and pushed through T's JVP, so the closed form is exact under ``clip=`` (by value or by
norm) and ``maximize`` (J_T = −I), as the generic path is (``tests/test_fmd_clip.py``).

Departure from exact FMD, ``hvp_clip=c`` (non-greedy paper, Appendix B: "The Hessian matrix product
is clipped to ±10 to prevent one batch from having a dominating contribution to hypergradients"):
P_t above is replaced by clamp(P_t, −c, c), element by element over the N columns and the weights,
before it enters C_t. The result is then a biased estimate, not the hypergradient; ``info["hvp_clip"]``
records c. It needs the closed form (the generic path has no separate Hessian product to clamp).

    >>> hg = estimate("fmd", problem, lam, T=1000)          # lam with a few entries
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from dataclasses import dataclass, field

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import detached, zeros_like
from ..core.types import Hparams, Tensors
from .base import Carry, Estimator, EstimatorState, Hypergradient, register


def columns(lam: Hparams) -> Hparams:
    """ζ: the identity over λ's N scalar entries, as a dict of (N, *shape) tangents."""
    v0 = next(iter(lam.values()))
    n = sum(v.numel() for v in lam.values())
    eye, out, o = torch.eye(n, dtype=v0.dtype, device=v0.device), {}, 0
    for k, v in lam.items():
        out[k] = eye[:, o:o + v.numel()].reshape(n, *v.shape)
        o += v.numel()
    return out


def contract(alpha: Tensors, Z: list, lam: Hparams) -> Hparams:
    """α · Z over the weights, split back into λ's structure."""
    col = sum((z * a).reshape(z.shape[0], -1).sum(1) for a, z in zip(alpha, Z))
    out, o = {}, 0
    for k, v in lam.items():
        out[k] = col[o:o + v.numel()].reshape(v.shape)
        o += v.numel()
    return out


def closed_form_blocker(problem: InnerProblem, lam: Hparams) -> str | None:
    """Why the optimizer's closed-form tangent rule does not apply (None when it does)."""
    opt, spec = problem.optimizer, problem.spec
    why = opt.tangent_blocker(set(spec.specs), spec.constant_values())
    if why:
        return why
    other = [k for k in lam if not (k in spec.leaves and spec.leaves[k][0] in opt.tangent_hparams)]
    if other:
        return f"λ holds {other}; the closed form covers only optimizer {' / '.join(opt.tangent_hparams)}"
    return None


def coefficient_tangents(problem: InnerProblem, lam: Hparams, cols: Hparams, t: int,
                         cache: dict | None) -> dict[str, list[Any]]:
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


@dataclass
class FMDCarry(Carry):
    """Forward mode's memory within one inner optimization: the tangent Z = ds/dλ (N columns), SGD's
    closed-form velocity tangent C, the columns ζ, and which recursion runs."""

    cols: Hparams = field(default_factory=dict)      # ζ: identity columns over λ's N entries
    N: int = 0
    closed_form: bool = False                        # the optimizer's closed-form rule, else a batched JVP
    Z: list | None = None                            # ds_t/dλ over the state (or the weights, closed form)
    C: list | None = None                            # the closed form's velocity tangent
    cache: dict | None = None                        # coefficient tangents per schedule window (offline)


def closed_form_step(problem: InnerProblem, lam: Hparams, state: State, carry: FMDCarry,
                     hvp_clip: float | None = None) -> State:
    """One step and the optimizer's closed-form update of (Z, C) over the weights (1 step, N HVPs);
    with ``hvp_clip`` = c the product J_T H Z is clamped to [−c, c] first (the paper's departure)."""
    t = state.t + 1
    coef = problem.spec.coefficients(lam, t)
    new, grads, hz = problem.step_hvp(state, lam, carry.Z, coef)
    if hvp_clip is not None:
        hz = [None if h is None else h.clamp(-hvp_clip, hvp_clip) for h in hz]
    with torch.no_grad():
        dcoef = coefficient_tangents(problem, lam, carry.cols, t, carry.cache)
        carry.Z, carry.C = problem.optimizer.tangent_update((carry.Z, carry.C), hz, dcoef, coef, grads,
                                                            state.params, state.opt, new.opt, t, carry.N)
    return new


def generic_step(problem: InnerProblem, lam: Hparams, state: State, carry: FMDCarry) -> State:
    """One step and Z ← A Z + B over the full state by one batched JVP of Φ (N JVPs)."""
    state, carry.Z = problem.jvp(state, lam, carry.Z, carry.cols, batched=True)
    return state


@register
class FMD(Estimator):
    """Exact forward mode: one batched JVP per step, or the optimizer's closed-form tangent rule.

    ``closed_form``: None (the optimizer's closed-form tangent rule where it applies, e.g. SGD with
    lr / momentum / weight decay, clipped or not), True (require it) or False (always the generic
    batched JVP). ``hvp_clip``: None (exact), or c > 0 to clamp the closed form's Hessian product
    J_T H_t Z_{t-1} to [−c, c] element-wise (non-greedy paper, Appendix B; a departure from exact
    FMD, see the module docstring); it requires the closed form."""

    not_vectorizable = "its tangent columns do not broadcast over the task axis"

    name = "fmd"
    exact = True
    online = True
    memory = "O(N·|s|), constant in T"

    def __init__(self, closed_form: bool | None = None, hvp_clip: float | None = None) -> None:
        if closed_form not in (None, True, False):
            raise ValueError(f"closed_form must be None, True or False, got {closed_form!r}")
        if hvp_clip is not None:
            if isinstance(hvp_clip, bool) or not isinstance(hvp_clip, numbers.Real) or not 0 < hvp_clip < math.inf:
                raise ValueError(f"fmd hvp_clip must be a positive finite number (the paper uses 10.0) or None, "
                                 f"got {hvp_clip!r}")
            if closed_form is False:
                raise ValueError("fmd hvp_clip clamps the closed form's Hessian product, and closed_form=False "
                                 "turns the closed form off; drop one of them")
            hvp_clip = float(hvp_clip)
        self.closed_form = closed_form
        self.hvp_clip = hvp_clip

    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState,
              offline: bool = False) -> FMDCarry:
        why = closed_form_blocker(problem, lam)
        if self.closed_form and why:
            raise ValueError(f"fmd closed_form=True does not apply: {why}; use closed_form=None")
        if self.hvp_clip is not None and why:
            raise ValueError(f"fmd hvp_clip clamps the closed form's Hessian product, but the closed form does not "
                             f"apply: {why}; drop hvp_clip (exact forward mode), or use SGD (no Nesterov, no "
                             f"dampening) with λ holding only its lr / momentum / weight_decay")
        cols = columns(lam)
        return FMDCarry(est_state, cols, next(iter(cols.values())).shape[0],
                        closed_form=why is None and self.closed_form is not False, cache={} if offline else None)

    def _step(self, problem: InnerProblem, lam: Hparams, state: State, carry: FMDCarry) -> State:
        if carry.closed_form:
            return closed_form_step(problem, lam, state, carry, self.hvp_clip)
        return generic_step(problem, lam, state, carry)

    def _held(self, carry: FMDCarry, state: State) -> int:
        held = (carry.Z or []) + (carry.C or []) + list(carry.cols.values())
        return state.nbytes() + sum(x.numel() * x.element_size() for x in held)

    def _at(self, problem: InnerProblem, lam: Hparams, state: State, carry: FMDCarry) -> Hypergradient:
        """The hypergradient α_t Z_t + ∂L_val/∂λ at ``state`` = s_t."""
        loss, alpha, direct = problem.val_grad(state, lam)
        indirect = contract(alpha, carry.Z, lam) if carry.Z is not None else zeros_like(lam)
        return Hypergradient.of(direct, indirect, state=state, val_loss=loss,
                                info={"stored_bytes": self._held(carry, state), "closed_form": carry.closed_form,
                                      "hvp_clip": self.hvp_clip})

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        carry = self.start(problem, lam, state, est_state, offline=True)
        watch = problem.watcher()
        for _ in range(T):
            state = self._step(problem, lam, state, carry)
            watch(state.t)
        return self._at(problem, lam, state, carry)

    def advance(self, problem: InnerProblem, lam: Hparams, state: State,
                carry: FMDCarry) -> tuple[Hypergradient, FMDCarry]:
        state = self._step(problem, lam, state, carry)
        return self._at(problem, lam, state, carry), carry
