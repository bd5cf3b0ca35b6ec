"""Type aliases for the public signatures: λ, batches, the differentiable part of a state.

``Hparams``   λ: the flat dict of raw hyperparameter leaves, keyed as :mod:`hypergradient.core.hyper` says
              (``"optim.lr"``, ``"model.body.0.weight"``, ``"loss.l2"``, ...); inputs accept any mapping.
``Batch``     what a loss receives as ``batch``: a tensor, or a tuple / list / dict of tensors.
``Batches``   training data: ``t -> batch``, a sequence of batches (cycled) or an iterator (cached).
``Tensors``   tensors aligned with ``State.tensors()`` (weights, then optimizer state); ``None`` is zero.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch

__all__ = ["Hparams", "HparamsLike", "Batch", "Batches", "Tensors", "Loss", "TrainGrad"]

Hparams = dict[str, torch.Tensor]
HparamsLike = Mapping[str, torch.Tensor]
Batch = Any
Batches = Union[Callable[[int], Any], Sequence[Any], Iterable[Any]]
Tensors = Sequence[Optional[torch.Tensor]]
Loss = Callable[..., torch.Tensor]   # loss(f, batch, hp) -> scalar tensor
# (weights the gradient was taken at, ∇_w L_train, the new buffers)
TrainGrad = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], Mapping[str, torch.Tensor]]
