"""Noisy labels, the clean meta set, and the two inner problems: Meta-Weight-Net's (the training loss
mean_i WeightNet(ℓ_i) ℓ_i, λ = the WeightNet's parameters) and the unweighted baseline's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...core.inputs import Data, Hypers
from ...core.problem import InnerProblem
from ...learners.data import digits, minibatches, mnist1d
from ...learners.meta_weight_net import WeightNet
from ...optim import sgd
from .config import LabelNoiseConfig

__all__ = ["Splits", "splits", "build", "accuracy", "mlp"]

XY = tuple[torch.Tensor, torch.Tensor]


class Splits:
    def __init__(self, train: XY, clean_train: torch.Tensor, meta: XY, test: XY) -> None:
        self.train, self.clean_train, self.meta, self.test = train, clean_train, meta, test


def splits(cfg: LabelNoiseConfig, seed: int) -> Splits:
    """The training examples with a fraction ``cfg.noise`` of labels replaced by a uniformly drawn class
    (it may equal the true one: "uniform noise"), a clean meta set and the test set."""
    if cfg.data == "mnist1d":
        (Xtr, ytr), (Xva, yva), test = mnist1d(seed)
    elif cfg.data == "digits":
        (Xtr, ytr), (Xva, yva), test = digits(seed, n_train=cfg.n_train, n_val=cfg.n_meta)
    else:
        raise ValueError(f"data {cfg.data!r}: choose 'digits' or 'mnist1d'")
    g = torch.Generator().manual_seed(50_000 + seed)
    flip = torch.rand(len(ytr), generator=g) < cfg.noise
    noisy = torch.where(flip, torch.randint(0, 10, (len(ytr),), generator=g), ytr)
    return Splits((Xtr, noisy), ytr, (Xva[:cfg.n_meta], yva[:cfg.n_meta]), test)


def mlp(n_in: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def build(cfg: LabelNoiseConfig, data: Splits, seed: int, weighted: bool, width: int | None = None,
          T: int | None = None) -> InnerProblem:
    T = cfg.T if T is None else T
    torch.manual_seed(seed)
    model = mlp(data.train[0].shape[1], cfg.width if width is None else width).float()
    torch.manual_seed(10_000 + seed)
    net = WeightNet(hidden=cfg.mwn_hidden).float()

    def weighted_loss(f: Any, batch: Any, hp: Any) -> torch.Tensor:
        x, y = batch
        losses = F.cross_entropy(f(x), y, reduction="none")
        w = hp["mwn"](losses.detach().unsqueeze(-1)).squeeze(-1)
        return (w * losses).mean()

    def plain(f: Any, batch: Any, hp: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(f(x), y)
    train = minibatches(*data.train, cfg.batch, T, seed)
    meta = minibatches(*data.meta, cfg.meta_batch, T + 1, seed + 1)
    return InnerProblem(model, weighted_loss if weighted else plain, plain,
                        sgd(lr=cfg.inner_lr, momentum=cfg.inner_momentum),
                        Hypers(modules={"mwn": net}) if weighted else Hypers(),
                        Data(train, lambda t: meta[t - 1]), horizon=T)


def accuracy(problem: InnerProblem, state: Any, xy: XY) -> float:
    with torch.no_grad():
        return (problem.forward(state)(xy[0]).argmax(-1) == xy[1]).double().mean().item()
