"""Meta-learners as inner problems: a learner holds the objects of :class:`InnerProblem` minus the
data and builds one problem per task (support = training batches, query = validation batch)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, NoReturn, cast

import torch
from torch import nn

from ..core.deprecation import warn
from ..core.functional import Forward
from ..core.hyper import HyperView
from ..core.inputs import Data, Hypers, Settings, from_keywords
from ..core.optimizer import Optimizer, get_optimizer
from ..core.problem import InnerProblem
from ..core.types import Batch
from ..drivers.meta import MetaLearner, Task

__all__ = ["supervised", "ProblemLearner"]


def supervised(loss_fn: Callable) -> Callable:
    """``(f, (x, y), hp) -> loss_fn(f(x), y)``: a train / validation loss from a criterion."""
    def loss(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        x, y = batch
        return loss_fn(f(x), y)
    return loss


def _unused(t: int) -> NoReturn:  # placeholder data of the reference problem (never called)
    raise RuntimeError("the reference problem has no data; build a task's problem with learner.problem(task)")


class ProblemLearner(MetaLearner):
    """A learner from the objects of :class:`InnerProblem` minus the data; ``problem(task)`` trains
    on ``task.support`` and validates on ``task.query``."""

    def __init__(self, model: nn.Module, train_loss: Callable, val_loss: Callable, optimizer: str | Optimizer = "sgd",
                 hypers: Hypers | None = None, *, horizon: int, settings: Settings | None = None,
                 optimizer_options: Mapping | None = None, **keywords: Any) -> None:
        if optimizer_options is not None:
            warn("ProblemLearner(optimizer_options=...)", "ProblemLearner(optimizer=get_optimizer(name, **options))")
            optimizer = get_optimizer(optimizer, **optimizer_options)
        hypers, _, settings = from_keywords("ProblemLearner", keywords, hypers, None, settings, need_data=False)
        self.model, self.train_loss, self.val_loss, self.optimizer = model, train_loss, val_loss, optimizer
        self.hypers, self.settings, self.horizon = hypers, settings, horizon
        self._reference = self._problem(_unused, _unused)
        self._versions = self._model_versions()

    def _problem(self, support: Any, query: Any) -> InnerProblem:
        return InnerProblem(self.model, self.train_loss, self.val_loss, self.optimizer, self.hypers,
                            Data(support, query), horizon=self.horizon, settings=self.settings)

    def _model_versions(self) -> tuple:
        """What the reference problem was built from: the model's tensors (their in-place versions,
        storage, dtype, device, requires_grad) and the objects the problem holds (an attribute replaced
        after construction is seen). Not seen: a write through ``p.data`` (its own version counter)."""
        held = (self.model, self.train_loss, self.val_loss, self.optimizer, self.hypers, self.settings)
        return (tuple(id(x) for x in held), self.horizon,
                tuple((id(t), t._version, t.data_ptr(), t.dtype, t.device, t.requires_grad)
                      for t in list(self.model.parameters()) + list(self.model.buffers())))

    def problem(self, task: Task) -> InnerProblem:
        """The task's problem: the reference problem on the task's data (``InnerProblem.with_data``:
        no copy of the model per task); rebuilt first if the model changed since."""
        if self._model_versions() != self._versions:
            self._reference, self._versions = self._problem(_unused, _unused), self._model_versions()
        return self._reference.with_data(Data(cast(Any, task.support), cast(Any, task.query)))

    def init_hparams(self) -> dict:
        return self._reference.init_hparams()

    def init_weights(self) -> dict:
        return self._reference.params_dict(self._reference.init_state())

    @property
    def weight_names(self) -> tuple:
        return self._reference.names
