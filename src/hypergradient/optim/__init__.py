"""Differentiable inner optimizers: pure ``init`` / ``update`` pairs with explicit state, each
reproducing ``torch.optim``, each registered by name (``@register_optimizer``). Imports
:mod:`hypergradient.core` only."""

from ..core.optimizer import OPTIMIZERS, Optimizer, get_optimizer, register_optimizer
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .sgd import SGD

get = get_optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "OPTIMIZERS", "get", "register_optimizer"]
