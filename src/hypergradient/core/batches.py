"""Batch sources as ``t -> batch``: the training batch D_t of inner step t and the validation batch."""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence, cast

import torch

from .types import Batch, Batches

__all__ = ["stream", "leaves"]


def leaves(batch: Batch) -> list[torch.Tensor]:
    """The tensors of a batch (a tensor, or nested tuples / lists / dicts of them)."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else ()
    return [x for item in items for x in leaves(item)]


def stream(data: Batches, what: str) -> Callable[[int], Batch]:
    """Turn a batch source into ``t -> batch``: a callable is used as is, a sequence is cycled
    (``[batch]`` is full-batch training), an iterator is cached so that steps can be replayed."""
    if callable(data):
        return data
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if len(data) == 0:
            raise ValueError(f"{what} is empty")
        if isinstance(data, tuple) and all(isinstance(x, torch.Tensor) for x in data):
            return lambda t: data  # a single batch given as a tuple of tensors
        return lambda t: data[(t - 1) % len(data)]
    if hasattr(data, "__next__"):
        it = cast(Iterator[Batch], data)  # has __next__: an iterator
        cache: list[Batch] = []

        def get(t: int) -> Batch:
            while len(cache) < t:
                cache.append(next(it))
            return cache[t - 1]
        return get
    if isinstance(data, (torch.Tensor, Mapping)):
        return lambda t: data
    raise TypeError(f"{what} must be a callable t -> batch, a sequence of batches, an iterator or a "
                    f"single batch; got {type(data).__name__}")
