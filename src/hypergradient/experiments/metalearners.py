"""Meta-learners as inner problems: which part of the model (or of the training) is the
hyperparameter λ shared across tasks, and which part w adapts to each task.

* :class:`ANIL` (Raghu et al. 2020): the body (feature extractor) is λ via ``model_hparams``, the
  head is w. HyperDistill's sinusoid setting: MLP 1-100-100-100-1, body = the first three layers.
* :class:`MetaSGD` (Li et al. 2017): element-wise learning rates, ``Hyper(lr, "element")``. The
  initialization is learned by the driver's Reptile / first-order MAML, not by the meta-gradient.
* :class:`WarpGrad` (Flennerhag et al. 2020), in the HyperDistill paper's form: warp layers
  interleaved with the task layers are λ (``model_hparams``) and are trained by the hypergradient
  of the query loss; only the task layers adapt.
* :class:`MetaWeightNet` (Shu et al. 2019): a small MLP maps each example's training loss to a
  weight in (0, 1); its parameters are λ via ``hparam_modules``. The validation loss does not use
  λ, so the direct term is zero (HyperDistill then fixes its scale to 1).

Each learner is a :class:`~hypergradient.drivers.MetaLearner` (``problem(task)``,
``init_hparams()``, ``init_weights()``) and works with every online estimator; estimators that
cannot learn optimizer hyperparameters (evograd) refuse Meta-SGD with a clear error.

    >>> learner = ANIL(anil_mlp(), horizon=30)
    >>> lam = learner.init_hparams()
    >>> res = meta_train(learner, "hyperdistill", lam, torch.optim.Adam(lam.values(), 1e-3),
    ...                  SinusoidTasks(), iterations=100)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..drivers.meta import MetaLearner, Task
from ..hparams import Hyper
from ..problem import InnerProblem

__all__ = ["supervised", "ProblemLearner", "ANIL", "MetaSGD", "WarpGrad", "MetaWeightNet", "WeightNet",
           "anil_mlp", "warp_mlp"]


def supervised(loss_fn: Callable) -> Callable:
    """``(f, (x, y), hp) -> loss_fn(f(x), y)``: a train / validation loss from a criterion."""
    def loss(f, batch, hp):
        x, y = batch
        return loss_fn(f(x), y)
    return loss


def _unused(t):  # placeholder data of the reference problem (never called)
    raise RuntimeError("the reference problem has no data; build a task's problem with learner.problem(task)")


class ProblemLearner(MetaLearner):
    """A learner from the arguments of :class:`InnerProblem` minus the data; ``problem(task)`` trains
    on ``task.support`` and validates on ``task.query``."""

    def __init__(self, model: nn.Module, train_loss: Callable, val_loss: Callable, optimizer="sgd", *,
                 horizon: int, hparams: Mapping | None = None, model_hparams=None, loss_hparams: Mapping | None = None,
                 hparam_modules: Mapping[str, nn.Module] | None = None, optimizer_options: Mapping | None = None,
                 val_mode: str = "train", seed: int = 0):
        self.model, self.train_loss, self.val_loss, self.optimizer = model, train_loss, val_loss, optimizer
        self.kwargs = dict(hparams=hparams, model_hparams=model_hparams, loss_hparams=loss_hparams,
                           hparam_modules=hparam_modules, optimizer_options=optimizer_options, val_mode=val_mode,
                           seed=seed, horizon=horizon)
        self._reference = self._problem(_unused, _unused)

    def _problem(self, support, query) -> InnerProblem:
        return InnerProblem(self.model, self.train_loss, self.val_loss, self.optimizer, train_batches=support,
                            val_batches=query, **self.kwargs)

    def problem(self, task: Task) -> InnerProblem:
        return self._problem(task.support, task.query)

    def init_hparams(self) -> dict:
        return self._reference.init_hparams()

    def init_weights(self) -> dict:
        return self._reference.params_dict(self._reference.init_state())

    @property
    def weight_names(self) -> tuple:
        return self._reference.names


# ---- models ---------------------------------------------------------------------------------------
def anil_mlp(sizes: Sequence[int] = (1, 100, 100, 100, 1), act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Sequential(body=MLP(sizes[:-1]) with activations, head=Linear(sizes[-2], sizes[-1]))``."""
    body: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        body += [nn.Linear(a, b), act()]
    return nn.Sequential(OrderedDict(body=nn.Sequential(*body), head=nn.Linear(sizes[-2], sizes[-1])))


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


class WeightNet(nn.Module):
    """Meta-Weight-Net's 1-hidden-layer MLP: loss value ↦ weight = floor + (1 − floor)·sigmoid(MLP(ℓ))
    (Shu et al.: 1-100-1 ReLU; HyperDistill: 1-200-1 with the weight bounded below by 0.1)."""

    def __init__(self, hidden: int = 100, floor: float = 0.0, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {floor!r}")
        self.net = nn.Sequential(nn.Linear(1, hidden), act(), nn.Linear(hidden, 1))
        self.floor = floor

    def forward(self, loss: torch.Tensor) -> torch.Tensor:
        return self.floor + (1.0 - self.floor) * torch.sigmoid(self.net(loss))


# ---- learners -------------------------------------------------------------------------------------
class ANIL(ProblemLearner):
    """ANIL: λ = the body (``model_hparams=body``), w = the rest (the head); inner SGD with momentum.

    Args:
        model: e.g. :func:`anil_mlp`; ``body`` names (prefixes) its λ part.
        loss: criterion ``loss(pred, target)`` for both support and query (default MSE).
        lr, momentum: the inner SGD's constants (paper: 0.01 and 0.9). horizon: T.
    """

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *, body="body", lr: float = 0.01,
                 momentum: float = 0.9, horizon: int = 30, **kw):
        super().__init__(model, supervised(loss), supervised(loss), "sgd", horizon=horizon,
                         hparams={"lr": lr, "momentum": momentum}, model_hparams=body, **kw)


class MetaSGD(ProblemLearner):
    """Meta-SGD: one learned learning rate per weight element (λ = ``optim.lr[name]``).

    Args:
        lr: the initial element-wise learning rate. positive: ``None`` (Meta-SGD allows any sign) or
            ``"softplus"`` / ``"exp"``. momentum: a constant.
    """

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *, lr: float = 0.01, positive=None,
                 momentum: float = 0.0, horizon: int = 5, **kw):
        super().__init__(model, supervised(loss), supervised(loss), "sgd", horizon=horizon,
                         hparams={"lr": Hyper(lr, "element", positive=positive), "momentum": momentum}, **kw)


class WarpGrad(ProblemLearner):
    """WarpGrad-style: λ = the warp layers (names starting with ``warp``), w = the task layers."""

    def __init__(self, model: nn.Module, loss: Callable = F.mse_loss, *, warp: str = "warp", lr: float = 0.01,
                 momentum: float = 0.9, horizon: int = 30, **kw):
        def is_warp(name: str) -> bool:
            return name.split(".")[0].startswith(warp)
        if not any(is_warp(n) for n, _ in model.named_parameters()):
            raise ValueError(f"no parameter name starts with {warp!r}: build the model with warp_mlp or name "
                             "the warp layers accordingly")
        super().__init__(model, supervised(loss), supervised(loss), "sgd", horizon=horizon,
                         hparams={"lr": lr, "momentum": momentum}, model_hparams=is_warp, **kw)


class MetaWeightNet(ProblemLearner):
    """Meta-Weight-Net: the training loss is mean_i WeightNet(ℓ_i) · ℓ_i with ℓ_i the per-example loss
    (the net's input is ℓ_i detached, as in the reference code); λ = the net's parameters.

    Args:
        per_example: ``per_example(pred, target) -> (n,)`` losses (default squared error averaged over
            the output dimensions; use ``F.cross_entropy(..., reduction="none")`` for labels).
        net: the weighting module (default :class:`WeightNet`).
    """

    def __init__(self, model: nn.Module, per_example: Callable | None = None, *, net: nn.Module | None = None,
                 lr: float = 0.01, momentum: float = 0.9, horizon: int = 30, **kw):
        per = per_example or (lambda pred, y: ((pred - y) ** 2).reshape(len(y), -1).mean(1))
        self.net = WeightNet() if net is None else net

        def train_loss(f, batch, hp):
            x, y = batch
            losses = per(f(x), y)
            w = hp["mwn"](losses.detach().unsqueeze(-1)).squeeze(-1)
            return (w * losses).mean()

        def val_loss(f, batch, hp):
            x, y = batch
            return per(f(x), y).mean()

        super().__init__(model, train_loss, val_loss, "sgd", horizon=horizon,
                         hparams={"lr": lr, "momentum": momentum}, hparam_modules={"mwn": self.net}, **kw)
