"""Meta-learners as inner problems: a learner holds the arguments of :class:`InnerProblem` minus the
data and builds one problem per task (support = training batches, query = validation batch)."""

from __future__ import annotations

from typing import Callable, Mapping

from torch import nn

from ..core.deprecation import renamed_kwargs
from ..core.problem import InnerProblem
from ..drivers.meta import MetaLearner, Task

__all__ = ["supervised", "ProblemLearner"]


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

    @renamed_kwargs(hparams="optimizer_values")
    def __init__(self, model: nn.Module, train_loss: Callable, val_loss: Callable, optimizer="sgd", *,
                 horizon: int, optimizer_values: Mapping | None = None, model_hparams=None,
                 loss_hparams: Mapping | None = None,
                 hparam_modules: Mapping[str, nn.Module] | None = None, optimizer_options: Mapping | None = None,
                 val_mode: str = "train", seed: int = 0):
        self.model, self.train_loss, self.val_loss, self.optimizer = model, train_loss, val_loss, optimizer
        self.kwargs = dict(optimizer_values=optimizer_values, model_hparams=model_hparams, loss_hparams=loss_hparams,
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
