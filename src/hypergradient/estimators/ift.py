"""Implicit differentiation (IFT) at a stationary point of the training loss.

If w_T ≈ w*(λ) with ∇_w L_train(w*, λ) = 0, the implicit function theorem gives (ALGORITHMS.md §4)

    indirect = −α H⁻¹ ∂²L_train/∂w∂λ,   α = ∂L_val/∂w_T,  H = ∂²L_train/∂w∂w at w_T

Solve H x = α with a solver of :mod:`hypergradient.linalg` (one signature for all), then take
``−x ∂²L_train/∂w∂λ`` as one VJP of the gradient map w ↦ ∇_w L_train(w, λ) with respect to λ.
``solver`` is one of

* ``"cg"``       conjugate gradients on (H + ridge·I) x = α (Pedregosa 2016), at most ``maxiter``
                 HVPs, stopping at ‖r‖ ≤ tol·‖α‖;
* ``"neumann"``  x = η Σ_{j=0..maxiter} (I − ηH)^j α, ``maxiter`` HVPs (Lorraine et al. 2020, Eq. 5
                 and Algorithm 3; η = ``lr``, by default the inner optimizer's constant lr);
* ``"dense"``    materialise H (|w| HVPs) and solve densely: small problems and tests only
                 (|w| ≤ ``max_size``; None lifts the limit);
* a callable ``solve(matvec, b, *, maxiter, tol, ridge) -> x`` of the same signature.

The names ``ift_cg``, ``ift_neumann`` and ``ift_exact`` are aliases of ``ift`` with that solver.
H and the mixed term use the training batch of the last step. Optimizer hyperparameters (lr, momentum)
do not enter the stationarity condition, so they raise a ValueError. Online, N.IFT(N, K) of the
HyperDistill experiments is ``solver="neumann", maxiter=N, window=K``: the hypergradient is computed
only over the last ``window`` steps of the horizon (N + 1 products each); earlier steps return zeros
with ``hg.active = False`` and the drivers take no outer step there.

    >>> hg = estimate("ift", problem, lam, T=500, solver="cg", maxiter=100)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.deprecation import renamed_kwargs
from ..core.problem import InnerProblem
from ..core.state import State
from ..core.tree import zeros_like
from ..core.types import Hparams
from ..linalg import SOLVERS
from .base import Carry, Estimator, EstimatorState, Hypergradient, register, register_alias

DEFAULTS: dict[str, dict[str, Any]] = {"cg": {"maxiter": 50, "tol": 1e-10}, "neumann": {"maxiter": 20, "tol": 0.0},
                                      "dense": {}}


@dataclass
class IFTCarry(Carry):
    start: int = 0      # the step index the inner optimization started from (the window is its last K steps)


@register
class IFT(Estimator):
    """Implicit differentiation at convergence, by any linear solver (cg, neumann, dense, a callable).

    ``window=K``: online over the last K steps of the horizon only (N.IFT(N, K))."""

    not_vectorizable = "CG and dense solves couple the tasks' blocks (a different iterate at finite maxiter)"

    name = "ift"
    optimizer_hparams = False
    no_optimizer_hparams = ("it treats w_T as a stationary point of the training loss, where the optimizer's "
                            "hyperparameters do not enter")
    online = True
    memory = "O(|s|)"

    @renamed_kwargs(N="maxiter", K="window")
    def __init__(self, solver: str | Callable[..., Any] = "cg", *, maxiter: int | None = None,
                 tol: float | None = None, ridge: float = 0.0, window: int | None = None, lr: float | None = None,
                 max_size: int | None = 4096) -> None:
        if not callable(solver) and solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)} or a callable solve(matvec, b, *, maxiter, "
                             f"tol, ridge), got {solver!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window (online over the last K steps) must be a positive int or None, got {window!r}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        if lr is not None and solver != "neumann":
            raise ValueError("lr is the Neumann step size; it applies to solver='neumann'")
        self.solver, self.window, self.ridge, self.lr = solver, window, ridge, lr
        opts: dict[str, Any] = dict(DEFAULTS.get(solver, {}) if isinstance(solver, str) else {})
        opts.update({k: v for k, v in (("maxiter", maxiter), ("tol", tol)) if v is not None})
        if solver == "dense":
            if maxiter is not None or tol is not None:
                raise ValueError("the dense solve takes no maxiter or tol")
            opts["max_size"] = max_size
        self.solver_options = opts

    def _solve(self, problem: InnerProblem) -> tuple[Callable[..., Any], dict[str, Any]]:
        if callable(self.solver):
            return self.solver, dict(self.solver_options)
        opts = dict(self.solver_options)
        if self.solver == "neumann":
            if self.lr is None and "lr" not in problem.spec.constants:
                raise ValueError("ift with solver='neumann' needs the Neumann step size: give lr=η (about 1/‖H‖), "
                                 "or use an inner optimizer with a constant learning rate")
            opts["lr"] = problem.spec.constants["lr"] if self.lr is None else self.lr
        return SOLVERS[self.solver], opts

    def implicit(self, problem: InnerProblem, lam: Hparams, state: State) -> Hypergradient:
        """The hypergradient at ``state`` treated as a stationary point."""
        t = max(state.t, 1)
        loss, alpha, direct = problem.val_grad(state, lam)
        solve, opts = self._solve(problem)
        x = solve(lambda v: problem.hvp(state, lam, v, t=t), alpha, ridge=self.ridge, **opts)
        indirect = {k: -v for k, v in problem.mixed_vjp(state, lam, x, t).items()}
        return Hypergradient.of(direct, indirect, state=state, val_loss=loss)

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        state, _ = problem.run(state, lam, T)
        return self.implicit(problem, lam, state)

    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> IFTCarry:
        if self.window is not None and problem.horizon is None:
            raise ValueError("ift with window=K needs the horizon T to know the last K steps; give "
                             "InnerProblem(horizon=T)")
        return IFTCarry(est_state, state.t)

    def advance(self, problem: InnerProblem, lam: Hparams, state: State,
                carry: IFTCarry) -> tuple[Hypergradient, IFTCarry]:
        state = problem.step(state, lam)
        horizon = problem.horizon or 0
        if self.window is not None and state.t - carry.start <= horizon - self.window:
            zero = zeros_like(lam)
            return Hypergradient.of(zero, zero, state=state, active=False), carry
        return self.implicit(problem, lam, state), carry


register_alias("ift_cg", "ift", solver="cg")
register_alias("ift_neumann", "ift", solver="neumann")
register_alias("ift_exact", "ift", solver="dense")
