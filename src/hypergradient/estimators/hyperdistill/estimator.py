"""HyperDistill (Lee et al., ICLR 2022, Algorithms 3 and 4): the whole second-order term distilled
into one VJP per inner step, at a distilled weight point w*_t and a distilled dataset D*_t.

Per inner step t = 1, 2, … of an inner optimization (k counts the steps since ``online_init``):

    S_k = Σ_{i<k} γ^i = (1 − γ^k)/(1 − γ)                                 (S_k = k when γ = 1)
    p_k = (γ − γ^k)/(1 − γ^k) = γ S_{k−1}/S_k
    s*_1 = s_{t−1};   s*_k = p_k s*_{k−1} + (1 − p_k) s_{t−1}                              (Eq. 13)
    D*_1 = D_t;       D*_k = SS(D*_{k−1}, p_k) ∪ SS(D_t, 1 − p_k)                          (Eq. 14)
    s_t = Φ(s_{t−1}, λ; D_t)
    α_t = ∂L_val(w_t, λ)/∂w_t;   v_t = α_t ∂Φ(s*_k, λ; D*_k)/∂λ     (one VJP, w.r.t. λ only)
    g_t = ∂L_val(w_t, λ)/∂λ + θ S_k v_t                                                  (Eq. 15)

Eq. 13's recursion is the explicit weighted average Eq. 12, w*_k = Σ_i γ^{k−i} w_{i−1} / S_k.
SS(D, p) keeps a uniformly random subset of round(|D| p) examples (batches are tensors, or tuples /
lists / dicts of tensors, with a leading batch dimension), drawn with the estimator's own
``torch.Generator``.

θ comes from LinearEstimation (Algorithm 4, Eqs. 16–18, :func:`linear_estimation`): from the
episode's initial state run T steps keeping s_0 and s_T only, walk back with DrMAD, and at backward
step s = T − t + 1 pair the partial DrMAD sum g^SO_s (a valid indirect term over the last s steps,
Eq. 16) with the distilled VJP v_s = α_T ∂Φ(s*_s, λ; D*_s)/∂λ, where
``q_s = (1 − γ^{s−1})/(1 − γ^s)``, ``s*_1 = ŝ_{T−1}``, ``s*_s = q_s s*_{s−1} + (1 − q_s) ŝ_{T−s}``,
``D*_1 = D_T``, ``D*_s = SS(D*_{s−1}, q_s) ∪ SS(D_{T−s+1}, 1 − q_s)`` (Eqs. 17–18). Then
``x_s = ‖v_s‖ S_s``, ``y_s = ⟨v_s/‖v_s‖, g^SO_s⟩`` and ``θ = xᵀy / xᵀx``. It is refreshed at the
1st, 51st, 101st, … inner optimization (``period=50``).

Choices where the paper is silent (ALGORITHMS.md §6):

* the state s = (w, optimizer state): the momentum buffer / Adam moments are distilled exactly like
  w (``distill_opt_state=True``; False uses the current optimizer state s_{t−1}.opt instead). The
  distilled step runs with step index t (schedules, bias corrections) and the current buffers;
* Eq. 17 uses the DrMAD-interpolated states ŝ in place of the unstored s_{T−s} (constant memory);
* the distilled VJP in Eq. 17's loop is taken as step T (the last step of every shifted horizon);
* "round off" is round half up; ``rounding="stochastic"`` rounds |D| p up with probability equal
  to its fractional part instead, so that small batches keep taking in new examples when p → γ;
* when ∂L_val/∂λ is identically zero (no path from λ to L_val in autograd's graph, the
  Meta-Weight-Net case) the paper sets π* = 1; we read that as "the scale θ S_k is 1", i.e.
  g_t = v_t (``zero_direct="unit"``); ``"normalized"`` gives the literal π* f_t = v_t/‖v_t‖ and
  ``"fit"`` keeps θ S_k. LinearEstimation is skipped when the scale is not used.

Cost per inner step: one step, one validation gradient and one VJP (as 1-step lookahead), plus
memory for s* and D*. LinearEstimation: T steps, one validation gradient, 2T VJPs; its cost is
added to the first online hypergradient of the inner optimization that triggered it.

The offline call (``estimate("hyperdistill", problem, lam, T=T)``) estimates θ over T steps (unless
``theta`` is given), runs the online recursion for T steps with λ fixed, and returns the *last*
hypergradient g_T, the distilled approximation of dL_val(w_T)/dλ that RMD computes exactly;
``info["sum"]`` holds Σ_t g_t (what T online updates at fixed λ would apply) and ``info["theta"]`` θ.

    >>> est = get("hyperdistill", gamma=0.99)
    >>> carry = est.online_init(problem, lam, state, est.new_state())
    >>> hg, carry = est.online_step(problem, lam, state, carry)   # hg.state = s_1; then update λ with hg.value
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import torch

from ...core.problem import InnerProblem
from ...core.state import Cost, State
from ...core.tree import dot
from ...core.warn import warn_user
from ...core.types import Batch, Hparams
from ..base import Carry, Estimator, EstimatorState, Hypergradient, register
from ..shared import last_of_steps, padded
from .data import batch_size, distill_batch
from .linear_estimation import linear_estimation
from .weights import forward_weight, geometric_sum, mix

__all__ = ["HyperDistill", "HyperDistillState", "HyperDistillCarry", "direct_is_zero"]

ROUNDING = ("nearest", "stochastic")
ZERO_DIRECT = ("unit", "normalized", "fit")


def direct_is_zero(problem: InnerProblem, lam: Hparams) -> bool:
    """True when no path leads from λ to L_val in autograd's graph (∂L_val/∂λ ≡ 0, e.g.
    Meta-Weight-Net); the problem's cached pre-flight probe, not counted in ``problem.cost``."""
    return set(problem.val_unreached(lam)) == set(lam)


# ---- the estimator ----------------------------------------------------------------------------------
@dataclass
class HyperDistillState(EstimatorState):
    """HyperDistill's memory across inner optimizations: θ, how many inner optimizations have started
    (θ is refitted at the 1st, (period+1)-th, …) and the subsampling generator."""

    theta: float | None = None
    episodes: int = 0
    generator: torch.Generator = field(default_factory=torch.Generator)
    # the joint fit (``joint=N``): the pooled sums Σ x y, Σ x x of this round's fits, the fits left in it,
    # and θ before the round (what ``theta_smoothing`` averages with)
    pool_xy: float = 0.0
    pool_xx: float = 0.0
    pool_left: int = 0
    theta_before: float | None = None


@dataclass
class HyperDistillCarry(Carry):
    """HyperDistill's memory within one inner optimization."""

    theta: float = 1.0           # the linear estimator's parameter for this inner optimization
    mode: str = "fit"            # "fit" (g = g^FO + θ S_k v), "unit" (g = v) or "normalized" (g = v/‖v‖)
    k: int = 0                   # inner steps taken since online_init
    star: list | None = None     # s*_k flattened like State.tensors() (w* then the optimizer state)
    dstar: Batch = None          # D*_k
    pending: Cost = field(default_factory=Cost)  # LinearEstimation's cost, charged to the next step
    estimation: dict | None = None               # LinearEstimation's info when it ran at this init


@register
class HyperDistill(Estimator):
    """Online hypergradient from one distilled VJP per step (Algorithms 3–4); memory O(|s| + |D|).

    Args:
        gamma: γ ∈ [0, 1], the decay of the Hessian-identity approximation (paper: tuned over
            {0.9, 0.99, 0.999, 0.9999}); γ = 0 with θ = 1 is 1-step lookahead.
        theta: a fixed θ; ``None`` fits it by LinearEstimation.
        period: refresh θ at the 1st, (period+1)-th, … call of ``online_init`` (paper: 50).
        T_estimate: LinearEstimation's horizon in online use (default: ``problem.horizon``).
        seed: seed of the generator that draws the subsamples of Eqs. 14 and 18.
        rounding: ``"nearest"`` (round half up) or ``"stochastic"`` for the subsample sizes.
        distill_opt_state: distill the optimizer state like w (else use the current one).
        zero_direct: what to do when ∂L_val/∂λ ≡ 0: ``"unit"`` | ``"normalized"`` | ``"fit"``.

    Safeguards, each a departure from the paper (whose algorithm the defaults are), for θ fits that
    swing (on the sinusoid task single-task fits at one state ranged 0.27–2.85, and 0.01–28 over
    training, letting the Hessian-blind second-order term blow the inner loop up; issue 15):

        joint: θ from one regression pooled over this many consecutive inner optimizations (a
            meta-batch's tasks) at each refit, θ = Σ xy / Σ xx over them (the fits of the round
            update it as they come); 1 is the paper's single-task fit.
        theta_smoothing: β ∈ [0, 1): θ ← β θ_before + (1 − β) θ_fit across refits (0: the paper).
        theta_range: (lo, hi): a fitted θ is clipped into it (None: the paper).
        subsample: False turns Eqs. 14 / 18's data subsampling off, D*_k = D_t (for problems whose
            batches do not change, where mixing subsets of one batch only shrinks it).

    Across inner optimizations θ, the count of inner optimizations and the subsampling generator
    live in the estimator state (:class:`HyperDistillState`, :meth:`new_state`), which the drivers
    carry and return.
    """

    not_vectorizable = "its θ is fitted from norms and ratios of the whole hypergradient (nonlinear in the tasks)"

    name = "hyperdistill"
    online = True
    memory = "O(|s| + |D|): s*, D*; LinearEstimation O(|s|)"
    state_class = HyperDistillState

    def __init__(self, gamma: float = 0.99, theta: float | None = None, period: int = 50,
                 T_estimate: int | None = None, seed: int = 0, rounding: str = "nearest",
                 distill_opt_state: bool = True, zero_direct: str = "unit", joint: int = 1,
                 theta_smoothing: float = 0.0, theta_range: tuple[float, float] | None = None,
                 subsample: bool = True) -> None:
        if not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be a float in [0, 1], got {gamma!r}")
        if theta is not None and not (isinstance(theta, (int, float)) and math.isfinite(theta)):
            raise ValueError(f"theta must be a finite float or None (fit by LinearEstimation), got {theta!r}")
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be a positive int (inner optimizations between fits), got {period!r}")
        if T_estimate is not None and (not isinstance(T_estimate, int) or T_estimate < 1):
            raise ValueError(f"T_estimate must be a positive int, got {T_estimate!r}")
        if rounding not in ROUNDING:
            raise ValueError(f"rounding must be one of {ROUNDING}, got {rounding!r}")
        if zero_direct not in ZERO_DIRECT:
            raise ValueError(f"zero_direct must be one of {ZERO_DIRECT}, got {zero_direct!r}")
        if not isinstance(joint, int) or joint < 1:
            raise ValueError(f"joint must be a positive int (inner optimizations pooled per fit), got {joint!r}")
        if not (isinstance(theta_smoothing, (int, float)) and 0.0 <= theta_smoothing < 1.0):
            raise ValueError(f"theta_smoothing must be in [0, 1), got {theta_smoothing!r}")
        if theta_range is not None and not (len(theta_range) == 2 and float(theta_range[0]) <= float(theta_range[1])):
            raise ValueError(f"theta_range must be None or (lo, hi) with lo <= hi, got {theta_range!r}")
        if joint > period:
            raise ValueError(f"joint={joint} pools more inner optimizations than a refit period ({period})")
        self.joint, self.theta_smoothing = joint, float(theta_smoothing)
        self.theta_range = None if theta_range is None else (float(theta_range[0]), float(theta_range[1]))
        self.subsample = bool(subsample)
        self.gamma, self.theta, self.period, self.T_estimate = float(gamma), theta, period, T_estimate
        self.seed, self.rounding = seed, rounding
        self.distill_opt_state, self.zero_direct = distill_opt_state, zero_direct

    def new_state(self) -> HyperDistillState:
        """θ (the fixed one, else not fitted yet), no inner optimization started, the generator seeded."""
        return HyperDistillState(None if self.theta is None else float(self.theta), 0,
                                 torch.Generator().manual_seed(self.seed))

    # ---- shared by the online and offline paths -----------------------------------------------------
    def _init(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState, T: int | None,
              refit: bool) -> HyperDistillCarry:
        est_state = cast(HyperDistillState, self.own(est_state))
        before = problem.cost.copy()
        mode = "fit"
        if self.zero_direct != "fit" and direct_is_zero(problem, lam):
            mode = self.zero_direct
            warn_user(f"hyperdistill: the validation loss does not depend on λ directly (∂L_val/∂λ ≡ 0), so "
                          f"zero_direct={mode!r} applies: g_t = v_t{'/‖v_t‖' if mode == 'normalized' else ''} "
                          "without the fitted scale θ S_k (the paper's π* = 1; about 1/S_k of it); pass "
                          "zero_direct='fit' to keep θ S_k")
        estimation = None
        if refit:                                                     # a new round of (joint) fits
            est_state.pool_xy, est_state.pool_xx, est_state.pool_left = 0.0, 0.0, self.joint
            est_state.theta_before = est_state.theta
        if mode == "fit" and self.theta is None and (est_state.pool_left > 0 or est_state.theta is None):
            if T is None:
                raise ValueError("hyperdistill needs a horizon for LinearEstimation: give "
                                 "InnerProblem(horizon=T), T_estimate=T, or a fixed theta")
            fitted, estimation = linear_estimation(
                problem, lam, state, T, self.gamma, generator=est_state.generator, rounding=self.rounding,
                distill_opt_state=self.distill_opt_state, subsample=self.subsample)
            est_state.theta = self._safeguarded(est_state, fitted, estimation)
        theta = 1.0 if est_state.theta is None else est_state.theta
        return HyperDistillCarry(est_state, theta, mode, pending=problem.cost - before, estimation=estimation)

    def _safeguarded(self, est_state: HyperDistillState, fitted: float, estimation: dict) -> float:
        """θ from this fit and the safeguards: pooled with the round's earlier fits (``joint``),
        smoothed with θ before the round, clipped into ``theta_range``. The paper's θ by default."""
        est_state.pool_left = max(0, est_state.pool_left - 1)
        x, y = estimation["x"], estimation["y"]
        est_state.pool_xy += float((x * y).sum())
        est_state.pool_xx += float((x * x).sum())
        theta = fitted if self.joint == 1 or est_state.pool_xx == 0 else est_state.pool_xy / est_state.pool_xx
        if self.theta_smoothing and est_state.theta_before is not None:
            theta = self.theta_smoothing * est_state.theta_before + (1 - self.theta_smoothing) * theta
        if self.theta_range is not None:
            theta = min(max(theta, self.theta_range[0]), self.theta_range[1])
        estimation["theta_used"] = theta
        return theta

    def advance(self, problem: InnerProblem, lam: Hparams, state: State,
                carry: HyperDistillCarry) -> tuple[Hypergradient, HyperDistillCarry]:
        generator = cast(HyperDistillState, carry.est_state).generator
        k = carry.k + 1
        t = state.t + 1
        batch = problem.train_batch(t)
        cur = state.tensors()
        n = len(state.params)
        if k == 1:                                                    # s*_1 = s_{t−1}, D*_1 = D_t
            p, star, dstar = 0.0, cur, batch
        else:                                                         # Eqs. 13, 14
            p = forward_weight(self.gamma, k)
            star = mix(p, carry.star, cur, None if self.distill_opt_state else n)
            dstar = distill_batch(carry.dstar, batch, p, generator, self.rounding) if self.subsample else batch
        nxt = problem.step(state, lam)
        loss, alpha, direct = problem.val_grad(nxt, lam)
        _, v = problem.vjp(state.with_tensors(star), lam, padded(alpha, nxt), batch=dstar)
        if carry.mode == "fit":
            scale = carry.theta * geometric_sum(self.gamma, k)       # Eq. 15
        elif carry.mode == "unit":
            scale = 1.0
        else:
            norm = math.sqrt(float(dot(v, v)))
            scale = 1.0 / norm if norm > 0 else 0.0
        indirect = {key: scale * x for key, x in v.items()}
        carry.k, carry.star, carry.dstar = k, star, dstar
        info = {"t": t, "p": p, "scale": scale, "theta": carry.theta, "mode": carry.mode,
                "distilled_size": batch_size(dstar)}
        if carry.estimation is not None:
            info["linear_estimation"], carry.estimation = carry.estimation, None
        hg = Hypergradient.of(direct, indirect, state=nxt, val_loss=loss, cost=carry.pending, info=info)
        carry.pending = Cost()
        return hg, carry

    # ---- offline ------------------------------------------------------------------------------------
    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        carry = self._init(problem, lam, state, est_state, T, refit=True)
        hg = last_of_steps(self.advance, problem, lam, state, carry, T)
        hg.info["theta"] = carry.theta
        return hg

    # ---- online -------------------------------------------------------------------------------------
    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> HyperDistillCarry:
        memory = cast(HyperDistillState, self.own(est_state))
        refit = memory.episodes % self.period == 0
        carry = self._init(problem, lam, state, est_state, self.T_estimate or problem.horizon, refit)
        memory.episodes += 1
        return carry
