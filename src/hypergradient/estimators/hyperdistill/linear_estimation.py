"""LinearEstimation (HyperDistill, Algorithm 4, Eqs. 16–18): the slope θ of the distilled second-order term,
fitted on one DrMAD backward pass."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...core.problem import InnerProblem
from ...core.state import State
from ...core.tree import dot, zeros_like
from ...core.types import Hparams
from ..shared import Interpolated, padded
from .data import distill_batch
from .weights import backward_weight, geometric_sum, mix

__all__ = ["linear_estimation"]


def linear_estimation(problem: InnerProblem, lam: Hparams, state: State, T: int, gamma: float, *,
                      generator: torch.Generator, rounding: str = "nearest",
                      distill_opt_state: bool = True, subsample: bool = True) -> tuple[float, dict[str, Any]]:
    """θ = xᵀy / xᵀx from one DrMAD backward pass (Algorithm 4); returns (θ, info).

    Memory O(|s|): only s_0, s_T, the interpolated state, s* and D* are held. ``info`` has the
    samples ``x`` and ``y`` (tensors of length T, s = 1..T), the fitted ``theta`` and ``cost``.
    ``subsample=False``: D*_s = D_{T−s+1} (Eq. 18's subsampling off, a safeguard of the estimator).
    θ = 1 (``info["degenerate"] = True``) when every v_s is zero.
    """
    before = problem.cost.copy()
    first = state.detach()
    last, _ = problem.run(first, lam, T)
    _, alpha, _ = problem.val_grad(last, lam, wrt_lam=False)
    aT = padded(alpha, last)
    interpolated = Interpolated(first, last)                          # DrMAD's ŝ (Algorithm 2, line 5)
    cot = aT
    gso = zeros_like(lam)
    xs, ys, xy, xx = [], [], 0.0, 0.0
    star, dstar = None, None
    for t in range(T, 0, -1):
        shat = interpolated(first.t + t - 1)                          # ŝ_{t−1}
        hat = shat.tensors()
        cot, gl = problem.vjp(shat, lam, cot)                         # g^SO += α B̂_t; α ← α Â_t (Eq. 16)
        gso = {k: gso[k] + gl[k] for k in gso}
        s = T - t + 1
        batch = problem.train_batch(first.t + t)                      # D_{T−s+1}
        if s == 1:
            star, dstar = hat, batch
        else:                                                         # Eqs. 17, 18 on interpolated states
            q = backward_weight(gamma, s)
            star = mix(q, star, hat, None if distill_opt_state else len(first.params))
            dstar = distill_batch(dstar, batch, q, generator, rounding) if subsample else batch
        dist = last.with_tensors(star)._replace(t=last.t - 1)         # the distilled step is step T
        _, v = problem.vjp(dist, lam, aT, batch=dstar)
        S = geometric_sum(gamma, s)
        nv = math.sqrt(float(dot(v, v)))
        proj = float(dot(v, gso))
        xs.append(nv * S)
        ys.append(proj / nv if nv > 0 else 0.0)
        xy += S * proj
        xx += (S * nv) ** 2
    degenerate = xx == 0.0
    theta = 1.0 if degenerate else xy / xx
    return theta, {"theta": theta, "x": torch.tensor(xs, dtype=torch.float64),
                   "y": torch.tensor(ys, dtype=torch.float64), "degenerate": degenerate,
                   "cost": problem.cost - before, "T": T}
