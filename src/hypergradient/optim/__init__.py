"""Differentiable inner optimizers: pure ``init`` / ``update`` pairs with explicit state, each
reproducing ``torch.optim``, each registered by name (``@register_optimizer``), each carrying its
hyperparameters, options and param groups (``hg.optim.sgd(lr=Hyper(0.1), momentum=0.9)``), with
gradient clipping inside the step (:mod:`~hypergradient.optim.clip`). Imports :mod:`hypergradient.core`
only."""

from ..core.optimizer import IGNORED_OPTIONS, OPTIMIZERS, Optimizer, get_optimizer, register_optimizer
from .rules.adadelta import Adadelta
from .rules.adagrad import Adagrad
from .rules.adam import Adam, AdamW
from .rules.adamax import Adamax
from .rules.asgd import ASGD
from .clip import clip_by_norm, clip_by_value
from .rules.nadam import NAdam
from .rules.radam import RAdam
from .rules.rmsprop import RMSprop
from .rules.rprop import Rprop
from .rules.sgd import SGD

get = get_optimizer

# torch.optim's constructors, lower-case: hg.optim.sgd(params?, lr=..., momentum=..., nesterov=...)
sgd, adam, adamw, rmsprop, adagrad = SGD, Adam, AdamW, RMSprop, Adagrad
adadelta, adamax, asgd, rprop, nadam, radam = Adadelta, Adamax, ASGD, Rprop, NAdam, RAdam

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "ASGD", "Rprop",
           "NAdam", "RAdam", "sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "asgd", "rprop",
           "nadam", "radam", "clip_by_norm", "clip_by_value", "OPTIMIZERS", "IGNORED_OPTIONS", "get",
           "register_optimizer"]
