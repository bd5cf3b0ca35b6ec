"""Differentiable inner optimizers: pure ``init`` / ``update`` pairs with explicit state, each
reproducing ``torch.optim``. Imports :mod:`hypergradient.core` only; registers every optimizer by name."""

from ..core.optimizer import OPTIMIZERS, Optimizer, get_optimizer, register_optimizer
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .sgd import SGD

for _cls in (SGD, Adam, AdamW, RMSprop, Adagrad):
    register_optimizer(_cls)
get = get_optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "OPTIMIZERS", "get", "register_optimizer"]
