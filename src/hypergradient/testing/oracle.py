"""The finite-difference oracle: central differences of L_val(w_T(λ), λ) for every entry of λ."""

from __future__ import annotations

import torch

from ..core.problem import InnerProblem
from ..core.types import HparamsLike

__all__ = ["finite_differences"]


def finite_differences(problem: InnerProblem, lam: HparamsLike, T: int | None = None,
                       eps: float = 1e-6) -> torch.Tensor:
    """Central differences of L_val(w_T(λ), λ) over every entry of λ, flattened in λ's key order."""
    T = problem.horizon_or(T)

    def L(l: HparamsLike) -> float:
        s, _ = problem.run(problem.init_state(), l, T)
        return problem.val_loss_at(s, l).item()

    out = []
    base = {k: v.detach().clone() for k, v in lam.items()}
    for k, v in base.items():
        g = torch.zeros(v.numel(), dtype=v.dtype)
        for i in range(v.numel()):
            hi = {kk: vv.clone() for kk, vv in base.items()}
            lo = {kk: vv.clone() for kk, vv in base.items()}
            hi[k].view(-1)[i] += eps
            lo[k].view(-1)[i] -= eps
            g[i] = (L(hi) - L(lo)) / (2 * eps)
        out.append(g)
    return torch.cat(out)
