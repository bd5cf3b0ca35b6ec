"""The inner problem every method of the schedules experiment runs on: data splits, the MLP, SGD with
momentum and weight decay (inner gradients clamped), and λ = (learning rate schedule, momentum, weight
decay), raw and started at 0. One builder for every method, so they differ only in how λ is shaped
(``lr_values``: K shared values, T (one per step) or None (one scalar, the greedy online run))."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ... import optim
from ...core.hyper import Hyper
from ...core.inputs import Data, Hypers, Settings
from ...core.problem import InnerProblem
from ...learners.data import digits, minibatches, mnist1d
from .config import SchedulesConfig

if TYPE_CHECKING:
    from ...core.functional import Forward
    from ...core.state import State
    from ...core.types import Batch, HparamsLike
    from ...core.view import HyperView

__all__ = ["Splits", "splits", "build", "accuracy", "constant_accuracy", "score", "BOX"]

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Splits:
    train: XY
    val: XY
    test: XY            # never used for any choice: only for the reported accuracies


def splits(cfg: SchedulesConfig, dataset: str, seed: int, dtype: torch.dtype = torch.float32) -> Splits:
    """The seed's train / validation / test split of ``dataset`` (``"mnist1d"`` or ``"digits"``)."""
    if dataset == "mnist1d":
        return Splits(*mnist1d(seed, n_val=cfg.n_val, dtype=dtype))
    if dataset == "digits":
        return Splits(*digits(seed, n_train=cfg.digits_train, n_val=cfg.digits_val, dtype=dtype))
    raise ValueError(f"unknown dataset {dataset!r}; choose mnist1d or digits")


def _ce(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
    return F.cross_entropy(f(batch[0]), batch[1])


def build(cfg: SchedulesConfig, data: Splits, seed: int, lr_values: int | None, *, T: int | None = None,
          batch: int | None = None, dtype: torch.dtype = torch.float32, lr_only: bool = False,
          batch_seed: int | None = None, val: XY | None = None) -> InnerProblem:
    """The seed's problem: the same initial weights (``torch.manual_seed(seed)``) and batch order for
    every method; λ = lr (``lr_values`` shared values, None: a scalar), momentum and weight decay (with
    ``lr_only`` the learning rates alone, momentum and weight decay the constant 0)."""
    T = cfg.T if T is None else T
    torch.manual_seed(seed)
    n_in = data.train[0].shape[1]
    model = nn.Sequential(nn.Linear(n_in, cfg.width), nn.ReLU(), nn.Linear(cfg.width, cfg.width), nn.ReLU(),
                          nn.Linear(cfg.width, 10)).to(dtype)
    other: Hyper | float = 0.0 if lr_only else Hyper(0.0, bounds=None)
    sgd = optim.sgd(lr=Hyper(0.0, schedule=lr_values, bounds=None), momentum=other, weight_decay=other,
                    clip=optim.clip_by_value(cfg.inner_clip))
    Xtr, ytr = data.train
    train = minibatches(Xtr.to(dtype), ytr, cfg.batch if batch is None else batch, T,
                        seed if batch_seed is None else batch_seed)
    Xva, yva = data.val if val is None else val
    return InnerProblem(model, _ce, _ce, sgd, Hypers(), Data(train, (Xva.to(dtype), yva)), horizon=T,
                        settings=Settings(seed=seed))


# the box the sign-descent steps can reach in cfg.outer_steps from 0 (paper App. B: α ∈ [−1, 1],
# β ∈ [−1.5, 1.5], μ ∈ [−4e-3, 4e-3]), the box of random search and TPE
def BOX(cfg: SchedulesConfig) -> dict[str, tuple[float, float]]:
    n = cfg.outer_steps
    return {"lr": (-n * cfg.gamma_lr, n * cfg.gamma_lr), "momentum": (-n * cfg.gamma_momentum, n * cfg.gamma_momentum),
            "weight_decay": (-n * cfg.gamma_wd, n * cfg.gamma_wd)}


def constant_accuracy(xy: XY) -> float:
    """The accuracy of always predicting the most frequent class."""
    return torch.bincount(xy[1]).max().item() / len(xy[1])


def accuracy(problem: InnerProblem, state: State, xy: XY) -> float:
    with torch.no_grad():
        logits = problem.forward(state)(xy[0].to(problem.dtype))
        return (logits.argmax(-1) == xy[1]).double().mean().item()


def score(problem: InnerProblem, lam: HparamsLike, data: Splits) -> dict[str, float | bool]:
    """Retrain from s_0 with λ for T steps: validation loss and accuracy, test accuracy. A run whose
    training loss stops being finite is 'diverged' and scores as the best constant prediction would."""
    from ...core.state import DivergenceError
    try:
        with torch.no_grad():
            s, _ = problem.run(problem.init_state(), lam, problem.horizon_or(None))
            val_loss = float(problem.val_loss_at(s, lam))
    except (DivergenceError, FloatingPointError):
        val_loss = float("nan")
    if not math.isfinite(val_loss):
        return {"val_loss": float("inf"), "val_acc": constant_accuracy(data.val), "test_acc": constant_accuracy(data.test),
                "diverged": True}
    return {"val_loss": val_loss, "val_acc": accuracy(problem, s, data.val), "test_acc": accuracy(problem, s, data.test),
            "diverged": False}
