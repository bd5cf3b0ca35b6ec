"""Meta-SGD (Li et al. 2017): element-wise learning rates, ``Hyper(lr, "element")``. The initialization
is learned by the driver's Reptile / first-order MAML, not by the meta-gradient."""

from __future__ import annotations

from typing import Any, Callable

import torch.nn.functional as F
from torch import nn

from ..core.hyper import Hyper
from ..optim import SGD
from .base import ProblemLearner, supervised

__all__ = ["MetaSGD"]


class MetaSGD(ProblemLearner):
    """Meta-SGD: one learned learning rate per weight element (λ = ``optim.lr[name]``).

    Args:
        lr: the initial element-wise learning rate. positive: ``None`` (Meta-SGD allows any sign) or
            ``"softplus"`` / ``"exp"``. momentum: a constant.
    """

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *, lr: float = 0.01, positive: str | None = None,
                 momentum: float = 0.0, horizon: int = 5, **kw: Any) -> None:
        super().__init__(model, supervised(loss), supervised(loss), SGD(lr=Hyper(lr, "element", positive=positive), momentum=momentum), horizon=horizon, **kw)
