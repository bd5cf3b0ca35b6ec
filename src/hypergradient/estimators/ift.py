"""Implicit differentiation (IFT) at a stationary point of the training loss.

If w_T ≈ w*(λ) with ∇_w L_train(w*, λ) = 0, the implicit function theorem gives (ALGORITHMS.md §4)

    indirect = −α H⁻¹ ∂²L_train/∂w∂λ,   α = ∂L_val/∂w_T,  H = ∂²L_train/∂w∂w at w_T

Solve H x = α with one of :mod:`hypergradient.linalg` (same signature for all), then take
``−x ∂²L_train/∂w∂λ`` as one VJP of the gradient map w ↦ ∇_w L_train(w, λ) with respect to λ:

* ``ift_neumann``  x = η Σ_{j=0..N} (I − ηH)^j α, N Hessian-vector products (Lorraine et al. 2020,
                   Eq. 5 and Algorithm 3; η defaults to the inner optimizer's constant lr);
* ``ift_cg``       conjugate gradients on (H + ridge·I) x = α (Pedregosa 2016);
* ``ift_exact``    materialise H (|w| HVPs) and solve densely — small problems and tests only.

H and the mixed term use the training batch of the last step. Optimizer hyperparameters (lr, momentum)
do not enter the stationarity condition, so they raise a ValueError. Online, N.IFT(N, K) of the
HyperDistill experiments: with ``K`` the hypergradient is computed only over the last K of the
horizon's steps (N + 1 products each); earlier steps return zeros with ``info["active"] = False``
and the driver should skip its outer update there.

    >>> hg = estimate("ift_cg", problem, lam, T=500, maxiter=100)
"""

from __future__ import annotations

import torch

from ..linalg import SOLVERS
from ._online import detached, result
from .base import Estimator, register


def mixed_vjp(problem, state, lam, x, t: int) -> dict:
    """x ∂²L_train/∂w∂λ at state's weights on the batch of step t (counted as one HVP)."""
    problem.cost.hvps += 1
    lam_d = {k: v.detach().requires_grad_() for k, v in lam.items()}
    _, g, _ = problem.train_grad(state.detach(), lam_d, t, create_graph=True)
    with torch.enable_grad():
        pairs = [(gi, xi) for gi, xi in zip(g, x) if gi.requires_grad]
        if not pairs:
            return {k: torch.zeros_like(v) for k, v in lam.items()}
        out = torch.autograd.grad([p[0] for p in pairs], list(lam_d.values()), [p[1] for p in pairs],
                                  allow_unused=True, materialize_grads=True)
    return dict(zip(lam_d, out))


class _Implicit(Estimator):
    optimizer_hparams = False
    no_optimizer_hparams = ("it treats w_T as a stationary point of the training loss, where the optimizer's "
                            "hyperparameters do not enter")
    online = True
    memory = "O(|s|)"
    solver = ""

    def __init__(self, *, K: int | None = None, ridge: float = 0.0, **solver_options):
        if K is not None and (not isinstance(K, int) or K < 1):
            raise ValueError(f"K (online over the last K steps) must be a positive int or None, got {K!r}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        super().__init__(K=K, ridge=ridge, **solver_options)
        self.K, self.ridge, self.solver_options = K, ridge, solver_options

    def _options(self, problem) -> dict:
        return dict(self.solver_options)

    def implicit(self, problem, lam, state):
        """(L_val, direct, indirect) at ``state`` treated as a stationary point."""
        t = max(state.t, 1)
        loss, alpha, direct = problem.val_grad(state, lam)
        x = SOLVERS[self.solver](lambda v: problem.hvp(state, lam, v, t=t), alpha, ridge=self.ridge,
                                 **self._options(problem))
        indirect = {k: -v for k, v in mixed_vjp(problem, state, lam, x, t).items()}
        return loss, direct, indirect

    def estimate(self, problem, lam, T, state):
        state, _ = problem.run(state, lam, T)
        loss, direct, indirect = self.implicit(problem, lam, state)
        return direct, indirect, {"val_loss": loss, "state": state}

    def online_init(self, problem, lam, state):
        if self.K is not None and problem.horizon is None:
            raise ValueError(f"{self.name} with K needs the horizon T to know the last K steps; give "
                             "InnerProblem(horizon=T)")
        return {"start": state.t}

    def online_step(self, problem, lam, state, carry):
        lam, before = detached(lam), problem.cost.copy()
        state = problem.step(state, lam)
        active = self.K is None or state.t - carry["start"] > problem.horizon - self.K
        if not active:
            zero = {k: torch.zeros_like(v) for k, v in lam.items()}
            return state, result(problem, before, zero, zero, {"active": False}, self.name), carry
        loss, direct, indirect = self.implicit(problem, lam, state)
        return state, result(problem, before, direct, indirect, {"val_loss": loss, "active": True}, self.name), carry


@register
class IFTNeumann(_Implicit):
    """Neumann-series IFT with N Hessian-vector products and step η (``lr``; default: the inner
    optimizer's constant learning rate)."""

    name = "ift_neumann"
    solver = "neumann"

    def __init__(self, N: int = 20, lr: float | None = None, *, K: int | None = None, ridge: float = 0.0,
                 tol: float = 0.0):
        super().__init__(K=K, ridge=ridge, maxiter=N, lr=lr, tol=tol)

    def _options(self, problem):
        opts = dict(self.solver_options)
        if opts["lr"] is None:
            if "lr" not in problem.hparams.constants:
                raise ValueError("ift_neumann needs the Neumann step size: give lr=η (about 1/‖H‖), or "
                                 "use an inner optimizer with a constant learning rate")
            opts["lr"] = problem.hparams.constants["lr"]
        return opts


@register
class IFTCG(_Implicit):
    """Conjugate-gradient IFT: at most ``maxiter`` HVPs, stopping at ‖r‖ ≤ tol·‖α‖."""

    name = "ift_cg"
    solver = "cg"

    def __init__(self, maxiter: int = 50, tol: float = 1e-10, *, K: int | None = None, ridge: float = 0.0):
        super().__init__(K=K, ridge=ridge, maxiter=maxiter, tol=tol)


@register
class IFTExact(_Implicit):
    """IFT with the Hessian materialised (|w| HVPs) and solved densely: small problems only
    (|w| ≤ ``max_size``; None lifts the limit)."""

    name = "ift_exact"
    solver = "dense"

    def __init__(self, *, K: int | None = None, ridge: float = 0.0, max_size: int | None = 4096):
        super().__init__(K=K, ridge=ridge, max_size=max_size)
