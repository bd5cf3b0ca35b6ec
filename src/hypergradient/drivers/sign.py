"""Sign-based outer optimizer (non-greedy paper, Micaelli & Storkey, Section 4 and Algorithm 1).

Per element of every hyperparameter, with s = sign(g) of the current hypergradient g:

    if s flipped against the previous outer step (s · s_prev < 0):  γ ← decay · γ      (decay = 1/2)
    λ ← λ − s · γ

Steps are absolute: γ starts at the group's ``lr`` (paper: 0.1 for learning rates, 0.15 for
momentum, 4e-4 for weight decay, one parameter group each). γ is stored as a per-element multiplier
of ``lr``, so a decay of ``lr`` (e.g. the online driver's linear decay) scales every step.

Where g is NaN or ±inf the element is skipped explicitly: λ, γ and the sign memory stay as they
were (``torch.sign(nan)`` is never used as a sign, so no memory is erased). Where g is exactly 0
nothing moves and the memory is kept as well (our choice: no sign, no information).

    >>> outer = SignDescent([{"params": [lam["optim.lr"]], "lr": 0.1}])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, overload

import torch

from .closure import evaluate_closure

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = ["SignDescent"]


class SignDescent(torch.optim.Optimizer):
    """λ −= sign(g) ⊙ γ, halving γ element-wise on sign flips; non-finite entries are skipped.

    Args:
        params: tensors or parameter groups (each group may set its own ``lr``).
        lr: the initial absolute step γ_0.
        decay: factor applied to γ on a sign flip (paper: 0.5).
    """

    skips_nonfinite = True  # the online driver passes NaN hypergradients through to this optimizer

    def __init__(self, params: ParamsT, lr: float = 0.1, decay: float = 0.5) -> None:
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr (the initial absolute step) must be a positive float, got {lr!r}")
        if not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay!r}")
        super().__init__(params, {"lr": lr, "decay": decay})

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["sign"] = torch.zeros_like(p)    # s_{prev}; 0 = no sign seen yet
                    st["scale"] = torch.ones_like(p)    # γ / lr
                s = torch.sign(torch.where(torch.isfinite(g), g, torch.zeros_like(g)))   # NaN/inf → 0: skipped
                flip = (s * st["sign"]) < 0
                st["scale"] = torch.where(flip, st["scale"] * group["decay"], st["scale"])
                p.sub_(s * st["scale"] * group["lr"])
                st["sign"] = torch.where(s != 0, s, st["sign"])
        return loss
