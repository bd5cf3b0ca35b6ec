"""ANIL (Raghu et al. 2020): the body (feature extractor) is λ via ``model_hparams``, the head is w.
HyperDistill's sinusoid setting: MLP 1-100-100-100-1, body = the first three layers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence

import torch.nn.functional as F
from torch import nn

from ..core.inputs import Hypers
from ..optim import SGD
from .base import ProblemLearner, supervised

__all__ = ["ANIL", "anil_mlp"]


def anil_mlp(sizes: Sequence[int] = (1, 100, 100, 100, 1), act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Sequential(body=MLP(sizes[:-1]) with activations, head=Linear(sizes[-2], sizes[-1]))``."""
    body: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        body += [nn.Linear(a, b), act()]
    return nn.Sequential(OrderedDict(body=nn.Sequential(*body), head=nn.Linear(sizes[-2], sizes[-1])))


class ANIL(ProblemLearner):
    """ANIL: λ = the body (``model_hparams=body``), w = the rest (the head); inner SGD with momentum.

    Args:
        model: e.g. :func:`anil_mlp`; ``body`` names (prefixes) its λ part.
        loss: criterion ``loss(pred, target)`` for both support and query (default MSE).
        body: the λ part of the model: a name prefix, names, or a predicate on names.
        lr: the inner SGD's learning rate (paper: 0.01).
        momentum: the inner SGD's momentum (paper: 0.9).
        horizon: T.
    """

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *,
                 body: str | Iterable[str] | Callable[[str], bool] = "body", lr: float = 0.01,
                 momentum: float = 0.9, horizon: int = 30, **kw: Any) -> None:
        super().__init__(model, supervised(loss), supervised(loss), SGD(lr=lr, momentum=momentum), horizon=horizon,
                         hypers=Hypers(model=body), **kw)
