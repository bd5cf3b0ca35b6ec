"""The differentiable-optimizer protocol: a pure ``init`` / ``update`` pair with explicit state.

``init(params) -> state`` and ``update(grads, state, params, hp, t) -> (params, state)``. ``params``,
``grads`` and every field of ``state`` are tuples of tensors aligned with one another; ``hp`` maps
each hyperparameter name to a tuple (one entry per parameter tensor) of floats or tensors that
broadcast against that parameter, so scalar, per-tensor, element-wise and scheduled hyperparameters
all reach the update the same way (see :mod:`hypergradient.hparams`). ``t`` is the 1-based step
index. Nothing is mutated in place, so the update can be differentiated with respect to params,
state and hyperparameters.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

Tensors = tuple  # tuple[torch.Tensor, ...]


class Optimizer:
    """Base class. Subclasses set ``name``, ``hparam_names`` (what may be learned), ``defaults``
    and implement :meth:`init` and :meth:`update`."""

    name: str = ""
    hparam_names: tuple[str, ...] = ()
    defaults: dict = {}
    torch_class: str = ""  # the torch.optim class it reproduces

    def __init__(self, **options):
        unknown = set(options) - set(self.options())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option {sorted(unknown)}; options are {self.options()}")
        self._options = {**self.static_defaults(), **options}
        for k, v in self._options.items():
            setattr(self, k, v)

    @classmethod
    def static_defaults(cls) -> dict:
        return {}

    @classmethod
    def options(cls) -> list[str]:
        return list(cls.static_defaults())

    def init(self, params: Sequence[torch.Tensor]) -> NamedTuple:
        raise NotImplementedError

    def update(self, grads, state, params, hp: dict, t: int):
        raise NotImplementedError

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({opts})"


def is_zero(x) -> bool:
    """True when a hyperparameter value is the Python number 0 (a term that can be skipped)."""
    return isinstance(x, (int, float)) and x == 0


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with derivative 0 (not inf) at x = 0, so double backward through Adam / RMSprop stays
    finite where a gradient is exactly zero. Same values as ``torch.sqrt`` everywhere."""
    if not x.requires_grad:
        return x.sqrt()
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def zeros_like_all(params):
    return tuple(torch.zeros_like(p) for p in params)
