"""Differentiable inner optimizers: pure ``init`` / ``update`` pairs with explicit state."""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}


def get(name_or_optimizer, **options) -> Optimizer:
    """An optimizer by registry name (``"sgd"``, ``"adam"``, ...) or an instance passed through."""
    if isinstance(name_or_optimizer, Optimizer):
        if options:
            raise TypeError("options can only be given with an optimizer name")
        return name_or_optimizer
    try:
        return OPTIMIZERS[name_or_optimizer](**options)
    except KeyError:
        raise ValueError(f"unknown optimizer {name_or_optimizer!r}; known: {sorted(OPTIMIZERS)}") from None


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "OPTIMIZERS", "get"]
