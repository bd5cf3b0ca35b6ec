"""The differentiable-optimizer protocol: a pure ``init`` / ``update`` pair with explicit state.

``init(params) -> state`` and ``update(grads, state, params, coef, t) -> (params, state)``.
``params``, ``grads`` and every field of ``state`` are tuples of tensors aligned with one another;
``coef`` maps each hyperparameter name to its step-t values, a tuple (one entry per parameter
tensor) of floats or tensors that broadcast against that parameter, so scalar, per-tensor,
element-wise and scheduled hyperparameters all reach the update the same way (see
:meth:`hypergradient.core.hyper.HyperSpec.coefficients`). ``t`` is the 1-based step index. Nothing is
mutated in place, so the update can be differentiated with respect to params, state and
hyperparameters. The optimizers themselves live in :mod:`hypergradient.optim`, which registers them
here by name.
"""

from __future__ import annotations

import math

from typing import Any, Collection, Mapping, NamedTuple, Sequence, Union

import torch

__all__ = ["Optimizer", "OPTIMIZERS", "register_optimizer", "get_optimizer"]

# one hyperparameter's value for one parameter tensor at step t: a number or a tensor broadcasting against it
Coefficient = Union[float, torch.Tensor]
# ``coef``: hyperparameter name -> its values, one per parameter tensor
Coefficients = Mapping[str, Sequence[Coefficient]]


# torch.optim's checks of its arguments (its constructors raise "Invalid ..."), by hyperparameter name:
# (low, high, high included)
TORCH_RANGES: dict[str, tuple[float, float, bool]] = {
    **{n: (0.0, math.inf, True) for n in ("lr", "momentum", "weight_decay", "eps", "alpha", "lr_decay")},
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False)}


class Optimizer:
    """Base class. Subclasses set ``name``, ``hparam_names`` (what may be learned), ``defaults``
    and implement :meth:`init` and :meth:`update`."""

    name: str = ""
    hparam_names: tuple[str, ...] = ()
    defaults: dict[str, Any] = {}
    torch_class: str = ""  # the torch.optim class it reproduces
    # True when ``update`` acts element by element (no norm or other reduction over a tensor), so that
    # it may run on all weights as one flat buffer (:mod:`hypergradient.core.flat`); a custom optimizer
    # keeps the per-tensor layout unless it says so
    elementwise: bool = False

    def __init__(self, **options: Any):
        unknown = set(options) - set(self.options())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option {sorted(unknown)}; options are {self.options()}")
        self._options = {**self.static_defaults(), **options}
        for k, v in self._options.items():
            setattr(self, k, v)

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        return {}

    def check_values(self, values: Mapping[str, tuple[float, float]]) -> None:
        """ValueError for values ``torch.optim`` rejects: ``values[name] = (min, max)`` of a constant or
        of a learned hyperparameter's initial value (:data:`TORCH_RANGES`)."""
        for name, (lo, hi) in values.items():
            if name not in TORCH_RANGES:
                continue
            a, b, closed = TORCH_RANGES[name]
            if lo < a or hi > b or (not closed and hi >= b):
                span = f"[{a}, {b}{']' if closed else ')'}"
                raise ValueError(f"{type(self).__name__}: {name} = {lo if lo < a else hi} is outside {span}, which "
                                 f"torch.optim.{self.torch_class or type(self).__name__} rejects; give a value in "
                                 f"range (a learned value that may leave it: Hyper(..., bounds=None))")

    @classmethod
    def options(cls) -> list[str]:
        return list(cls.static_defaults())

    def init(self, params: Sequence[torch.Tensor]) -> NamedTuple:
        raise NotImplementedError

    def update(self, grads: Sequence[torch.Tensor], state: Any, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], NamedTuple]:
        raise NotImplementedError

    # ---- forward mode's closed form (estimators/fmd.py) ---------------------------------------------
    # An optimizer with a closed-form tangent recursion names the hyperparameters it covers and
    # implements the two methods below; FMD asks, instead of testing for a class.
    tangent_hparams: tuple[str, ...] = ()

    def tangent_blocker(self, learned: Collection[str], constants: Mapping[str, float]) -> str | None:
        """Why the closed-form tangent rule does not apply when the optimizer hyperparameters
        ``learned`` are learned and the others are ``constants``; None when it does."""
        return f"{type(self).__name__} offers no closed-form tangent rule"

    def tangent_update(self, tangents: tuple[Sequence[torch.Tensor] | None, Sequence[torch.Tensor] | None],
                       hz: Sequence[torch.Tensor | None], dcoef: Mapping[str, Sequence[torch.Tensor | None]],
                       coef: Coefficients, grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                       opt: Any, new_opt: Any, t: int, N: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(Z_t, aux_t) from the tangent Z_{t-1} = dw_{t-1}/dλ and its auxiliary recursion (``tangents``,
        (None, None) before the first step), the batched HVPs ``hz`` = H_t Z_{t-1}, the step's
        coefficients ``coef`` and their derivatives ``dcoef`` (name -> per tensor (N, ...) or None)
        over the N columns of λ."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({opts})"


OPTIMIZERS: dict[str, type[Optimizer]] = {}


def register_optimizer(cls: type[Optimizer]) -> type[Optimizer]:
    """Make ``cls`` known by ``cls.name`` to :func:`get_optimizer` (and ``InnerProblem(optimizer=name)``)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name to be registered")
    if OPTIMIZERS.get(cls.name, cls) is not cls:
        raise ValueError(f"optimizer {cls.name!r} registered twice")
    OPTIMIZERS[cls.name] = cls
    return cls


def get_optimizer(name_or_optimizer: str | Optimizer, **options: Any) -> Optimizer:
    """An optimizer by registry name (``"sgd"``, ``"adam"``, ...) or an instance passed through."""
    if isinstance(name_or_optimizer, Optimizer):
        if options:
            raise TypeError("options can only be given with an optimizer name")
        return name_or_optimizer
    try:
        cls = OPTIMIZERS[name_or_optimizer]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name_or_optimizer!r}; known: {sorted(OPTIMIZERS)}") from None
    return cls(**options)
