"""WarpGrad (Flennerhag et al. 2020), in the HyperDistill paper's form: warp layers interleaved with
the task layers are λ (``model_hparams``) and are trained by the hypergradient of the query loss;
only the task layers adapt."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.inputs import Hypers
from ..optim import SGD
from .base import ProblemLearner, supervised

__all__ = ["WarpGrad", "warp_mlp"]


def warp_mlp(sizes: Sequence[int] = (1, 40, 40, 1), act: type[nn.Module] = nn.ReLU, warps: int = 2) -> nn.Sequential:
    """Task layers ``task{i}`` interleaved with ``warps`` linear warp layers ``warp{i}_{j}`` after every
    hidden layer; the warp layers start at the identity."""
    layers: list[tuple[str, nn.Module]] = []
    n = len(sizes) - 1
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append((f"task{i}", nn.Linear(a, b)))
        if i < n - 1:
            layers.append((f"act{i}", act()))
            for j in range(warps):
                w = nn.Linear(b, b)
                with torch.no_grad():
                    w.weight.copy_(torch.eye(b))
                    w.bias.zero_()
                layers.append((f"warp{i}_{j}", w))
    return nn.Sequential(OrderedDict(layers))


class WarpGrad(ProblemLearner):
    """WarpGrad-style: λ = the warp layers (names starting with ``warp``), w = the task layers."""

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *, warp: str = "warp", lr: float = 0.01,
                 momentum: float = 0.9, horizon: int = 30, **kw: Any) -> None:
        def is_warp(name: str) -> bool:
            return name.split(".")[0].startswith(warp)
        if not any(is_warp(n) for n, _ in model.named_parameters()):
            raise ValueError(f"no parameter name starts with {warp!r}: build the model with warp_mlp or name "
                             "the warp layers accordingly")
        super().__init__(model, supervised(loss), supervised(loss), SGD(lr=lr, momentum=momentum), horizon=horizon,
                         hypers=Hypers(model=is_warp), **kw)
