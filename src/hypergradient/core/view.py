"""What the losses receive as ``hp``: the loss hyperparameters' values and the hyperparameter modules
as functions (:class:`HyperView`, built by :meth:`hypergradient.core.hyper.HyperSpec.view`)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .functional import FunctionalModel
from .types import HparamsLike

__all__ = ["HyperView"]


class HyperView:
    """What loss functions receive as ``hp``: ``hp["l2"]`` is the (transformed) value of the loss
    hyperparameter ``l2``; ``hp["mwn"](x)`` runs the hyperparameter module ``mwn`` at its λ."""

    __slots__ = ("_values", "_modules", "_lam")

    def __init__(self, values: Mapping[str, torch.Tensor],
                 modules: Mapping[str, tuple[FunctionalModel, Mapping[str, str]]], lam: HparamsLike):
        self._values, self._modules, self._lam = values, modules, lam

    def __getitem__(self, name: str) -> Any:  # a tensor, or a module as a function
        if name in self._values:
            return self._values[name]
        if name in self._modules:
            fm, keys = self._modules[name]
            params = {n: self._lam[k] for n, k in keys.items()}
            return lambda *a, **kw: fm(params, {}, a, kw, training=True)[0]
        raise KeyError(f"no loss hyperparameter {name!r}; known: {sorted(self._values) + sorted(self._modules)}")

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._modules

    def keys(self) -> list[str]:
        return list(self._values) + list(self._modules)
