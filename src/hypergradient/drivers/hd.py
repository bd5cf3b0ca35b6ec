"""Hypergradient descent (Baydin et al., ICLR 2018): the greedy online baseline that adapts its own
learning rate from one step to the next (ALGORITHMS.md §8).

With the update written θ_t = θ_{t−1} − α_t d_t (d_t the optimizer's direction per unit learning
rate), ∂f(θ_{t−1})/∂α = −∇f(θ_{t−1}) · d_{t−1}, so one step of gradient descent on α is

    α_t = α_{t−1} + β ∇f(θ_{t−1}) · d_{t−1}                       (d_0 = 0, so α_1 = α_0)

* SGD-HD: d_t = g_t (so h_t = ∇f(θ_{t−1}) · ∇f(θ_{t−2})); with momentum μ (PyTorch's convention
  v_t = μ v_{t−1} + g_t) d_t = v_t, or g_t + μ v_t with Nesterov (SGDN-HD);
* Adam-HD: d_t = m̂_t / (√v̂_t + ε) with the usual bias corrections.

One α per parameter group (the dot product runs over the group's tensors), kept in the group's
``lr`` so that it can be read and logged. Both are ``torch.optim`` optimizers, usable as the outer
optimizer of :func:`hypergradient.drivers.run_online` or to train any model greedily.

    >>> opt = SGDHD(model.parameters(), lr=0.01, hypergrad_lr=1e-3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, overload

import torch

from .closure import evaluate_closure

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = ["SGDHD", "AdamHD"]


def _check(lr: float, hypergrad_lr: float) -> None:
    if not isinstance(lr, (int, float)) or lr < 0:
        raise ValueError(f"lr must be a non-negative float, got {lr!r}")
    if not isinstance(hypergrad_lr, (int, float)) or hypergrad_lr < 0:
        raise ValueError(f"hypergrad_lr (β) must be a non-negative float, got {hypergrad_lr!r}")


class _HD(torch.optim.Optimizer):
    def _direction(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], st: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            live = [p for p in group["params"] if p.grad is not None]
            grads = []
            for p in live:
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g + group["weight_decay"] * p
                grads.append(g)
            dots = [(g * self.state[p]["d"]).sum() for p, g in zip(live, grads) if "d" in self.state[p]]
            h = float(torch.stack(dots).sum()) if dots else 0.0        # one host sync per group
            group["lr"] = group["lr"] + group["hypergrad_lr"] * h     # α_t = α_{t−1} + β g_t·d_{t−1}
            for p, g in zip(live, grads):
                st = self.state[p]
                d = self._direction(p, g, group, st)
                p.sub_(group["lr"] * d)
                st["d"] = d
        return loss


class SGDHD(_HD):
    """SGD (optionally with momentum / Nesterov) whose learning rate follows hypergradient descent.

    Args:
        lr: α_0. hypergrad_lr: β. momentum, nesterov, weight_decay: as ``torch.optim.SGD``.
    """

    def __init__(self, params: ParamsT, lr: float = 0.01, hypergrad_lr: float = 1e-3, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        _check(lr, hypergrad_lr)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        super().__init__(params, dict(lr=lr, hypergrad_lr=hypergrad_lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def _direction(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], st: dict[str, Any]) -> torch.Tensor:
        mu = group["momentum"]
        if mu == 0:
            return g.clone()
        v = g.clone() if "v" not in st else mu * st["v"] + g
        st["v"] = v
        return g + mu * v if group["nesterov"] else v


class AdamHD(_HD):
    """Adam whose learning rate follows hypergradient descent (Adam-HD).

    Args:
        lr: α_0.
        hypergrad_lr: β (Baydin et al. use 1e-7 … 1e-4 for Adam).
        betas: as ``torch.optim.Adam``.
        eps: as ``torch.optim.Adam``.
        weight_decay: as ``torch.optim.Adam``.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, hypergrad_lr: float = 1e-7,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        _check(lr, hypergrad_lr)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        super().__init__(params, dict(lr=lr, hypergrad_lr=hypergrad_lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _direction(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], st: dict[str, Any]) -> torch.Tensor:
        b1, b2 = group["betas"]
        t = st.get("t", 0) + 1
        m = (1 - b1) * g if t == 1 else b1 * st["m"] + (1 - b1) * g
        v = (1 - b2) * g * g if t == 1 else b2 * st["v"] + (1 - b2) * g * g
        st["t"], st["m"], st["v"] = t, m, v
        return (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + group["eps"])


