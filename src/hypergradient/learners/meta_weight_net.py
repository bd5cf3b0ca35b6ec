"""Meta-Weight-Net (Shu et al. 2019): a small MLP maps each example's training loss to a weight in (0, 1);
its parameters are λ via ``hparam_modules``. The validation loss does not use λ, so the direct term
is zero (HyperDistill then fixes its scale to 1)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..core.functional import Forward
from ..core.hyper import HyperView
from ..core.inputs import Hypers
from ..optim import SGD
from ..core.types import Batch
from .base import ProblemLearner

__all__ = ["MetaWeightNet", "WeightNet"]


class WeightNet(nn.Module):
    """Meta-Weight-Net's 1-hidden-layer MLP: loss value ↦ weight = floor + (1 − floor)·sigmoid(MLP(ℓ))
    (Shu et al.: 1-100-1 ReLU; HyperDistill: 1-200-1 with the weight bounded below by 0.1)."""

    def __init__(self, hidden: int = 100, floor: float = 0.0, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {floor!r}")
        self.net = nn.Sequential(nn.Linear(1, hidden), act(), nn.Linear(hidden, 1))
        self.floor = floor

    def forward(self, loss: torch.Tensor) -> torch.Tensor:
        return self.floor + (1.0 - self.floor) * torch.sigmoid(self.net(loss))


class MetaWeightNet(ProblemLearner):
    """Meta-Weight-Net: the training loss is mean_i WeightNet(ℓ_i) · ℓ_i with ℓ_i the per-example loss
    (the net's input is ℓ_i detached, as in the reference code); λ = the net's parameters.

    Args:
        per_example: ``per_example(pred, target) -> (n,)`` losses (default squared error averaged over
            the output dimensions; use ``F.cross_entropy(..., reduction="none")`` for labels).
        net: the weighting module (default :class:`WeightNet`).
    """

    def __init__(self, model: nn.Module,
                 per_example: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, *,
                 net: nn.Module | None = None, lr: float = 0.01, momentum: float = 0.9, horizon: int = 30,
                 **kw: Any) -> None:
        per = per_example or (lambda pred, y: ((pred - y) ** 2).reshape(len(y), -1).mean(1))
        self.net = WeightNet() if net is None else net

        def train_loss(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
            x, y = batch
            losses = per(f(x), y)
            w = hp["mwn"](losses.detach().unsqueeze(-1)).squeeze(-1)
            return (w * losses).mean()

        def val_loss(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
            x, y = batch
            return per(f(x), y).mean()

        super().__init__(model, train_loss, val_loss, SGD(lr=lr, momentum=momentum), horizon=horizon,
                         hypers=Hypers(modules={"mwn": self.net}), **kw)
