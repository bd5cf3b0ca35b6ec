"""HyperDistill's distilled datasets (Eqs. 14 and 18): D* = SS(D*, p) ∪ SS(D_t, 1 − p), where SS(D, p)
keeps a uniformly random subset of round(|D| p) examples of a batch (a tensor, or a tuple / list / dict
of tensors with a leading batch dimension)."""

from __future__ import annotations

import math
from typing import Callable, Mapping, cast

import torch

from ...core.types import Batch

__all__ = ["subsample", "distill_batch", "batch_size"]


def _leaves(batch: Batch) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        items = list(batch.values())
    elif isinstance(batch, (tuple, list)):
        items = list(batch)
    else:
        items = [batch]
    bad = [type(x).__name__ for x in items if not isinstance(x, torch.Tensor)]
    if bad or not items:
        raise TypeError("HyperDistill subsamples training batches: give batches as a tensor or a tuple / "
                        f"list / dict of tensors with a leading batch dimension (found {bad or 'nothing'})")
    return items


def batch_size(batch: Batch) -> int:
    leaves = _leaves(batch)
    n = {x.shape[0] if x.dim() else None for x in leaves}
    if len(n) != 1 or None in n:
        raise ValueError("every tensor of a training batch needs the same leading batch dimension to be "
                         f"subsampled; found sizes {sorted(map(str, n))}")
    return cast(int, n.pop())


def _map(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: fn(v) for k, v in batch.items()}
    out = [fn(x) for x in batch]
    return tuple(out) if isinstance(batch, tuple) else out


def _cat(a: Batch, b: Batch) -> Batch:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, Mapping):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    out = [torch.cat([x, y]) for x, y in zip(a, b)]
    return tuple(out) if isinstance(a, tuple) else out


def _count(x: float, rounding: str, generator: torch.Generator) -> int:
    if rounding == "nearest":
        return int(math.floor(x + 0.5))
    lo = math.floor(x)
    frac = x - lo
    return lo + int(frac > 0 and torch.rand((), generator=generator, dtype=torch.float64).item() < frac)


def subsample(batch: Batch, p: float, generator: torch.Generator, rounding: str = "nearest") -> Batch:
    """SS(D, p): a uniformly random subset of round(|D| p) examples (in their original order), the
    batch itself when that is all of it, ``None`` when it is empty."""
    n = batch_size(batch)
    m = min(n, max(0, _count(n * p, rounding, generator)))
    if m == n:
        return batch
    if m == 0:
        return None
    idx = torch.randperm(n, generator=generator)[:m].sort().values
    return _map(batch, lambda x: x[idx.to(x.device)])


def distill_batch(old: Batch, new: Batch, p: float, generator: torch.Generator, rounding: str = "nearest") -> Batch:
    """D* = SS(old, p) ∪ SS(new, 1 − p) (Eqs. 14 and 18); ``new`` itself when p = 0."""
    if p == 0.0:
        return new
    a = subsample(old, p, generator, rounding)
    b = subsample(new, 1.0 - p, generator, rounding)
    if a is None:
        return new if b is None else b
    return a if b is None else _cat(a, b)
