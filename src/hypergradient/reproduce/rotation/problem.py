"""Data, the differentiable rotation, the LeNet and the inner problem whose one loss hyperparameter is
the angle (radians) applied to the training images."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...core.inputs import Data, Hypers
from ...core.problem import InnerProblem
from ...learners.data import digits, minibatches
from ...optim import adam
from .config import RotationConfig

__all__ = ["rotate", "lenet", "Splits", "splits", "build", "accuracy"]

XY = tuple[torch.Tensor, torch.Tensor]


def rotate(x: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    """Images (n, 1, H, W) rotated by ``angle`` (radians, counter-clockwise in the image's own axes),
    differentiable in the angle: ``affine_grid`` with [[cos, −sin, 0], [sin, cos, 0]], bilinear
    ``grid_sample`` with zero padding."""
    a = torch.as_tensor(angle, dtype=x.dtype)
    c, s = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, zero]), torch.stack([s, c, zero])]).unsqueeze(0).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def lenet(cfg: RotationConfig, side: int) -> nn.Module:
    """LeNet as the paper's (two convolutions with ReLU and max-pooling, three fully connected layers),
    adapted to ``side`` × ``side`` inputs (3×3 kernels with padding 1 keep the size until each pooling)."""
    c1, c2 = cfg.channels
    h1, h2 = cfg.hidden
    flat = c2 * (side // 4) ** 2
    return nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(flat, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))


class Splits:
    """Upright training images; validation and test images rotated by the true angle (and the upright
    test images, for the matched reference)."""

    def __init__(self, train: XY, val: XY, test: XY, test_upright: XY) -> None:
        self.train, self.val, self.test, self.test_upright = train, val, test, test_upright


def splits(cfg: RotationConfig, seed: int) -> Splits:
    if cfg.data != "digits":
        raise ValueError(f"data {cfg.data!r}: only 'digits' ships with the experiment's dependencies")
    (Xtr, ytr), (Xva, yva), (Xte, yte) = digits(seed, n_train=cfg.n_train, n_val=cfg.n_val)
    img = lambda X: X.reshape(-1, 1, 8, 8)                  # noqa: E731
    true = math.radians(cfg.angle_deg)
    with torch.no_grad():
        return Splits((img(Xtr), ytr), (rotate(img(Xva), true), yva), (rotate(img(Xte), true), yte), (img(Xte), yte))


def build(cfg: RotationConfig, data: Splits, seed: int) -> InnerProblem:
    """λ = {"loss.angle"} (radians, started at 0) rotates every training batch; the validation loss sees
    the rotated validation images at a new batch of ``cfg.batch`` each step."""
    torch.manual_seed(seed)
    model = lenet(cfg, data.train[0].shape[-1]).float()

    def train_loss(f: Any, batch: Any, hp: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(f(rotate(x, hp["angle"])), y)

    def val_loss(f: Any, batch: Any, hp: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(f(x), y)
    train = minibatches(*data.train, cfg.batch, cfg.T, seed)
    val = minibatches(*data.val, cfg.batch, cfg.T + 1, seed + 1)
    return InnerProblem(model, train_loss, val_loss, adam(lr=cfg.inner_lr),
                        Hypers(loss={"angle": torch.tensor(0.0, dtype=torch.float32)}), Data(train, lambda t: val[t - 1]),
                        horizon=cfg.T)


def accuracy(problem: InnerProblem, state: Any, xy: XY) -> float:
    with torch.no_grad():
        return (problem.forward(state)(xy[0]).argmax(-1) == xy[1]).double().mean().item()
