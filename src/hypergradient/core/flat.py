"""The flat layout: all inner weight tensors (and each optimizer-state field) as one 1-D buffer.

Differentiating through T steps of an elementwise optimizer costs, per step, a few ops *per
parameter tensor* forward and about twice that in the backward pass; on a model of many small
tensors that per-op overhead, not arithmetic, is the step's time. On the flat layout

    w = cat(w_1, …, w_n),   v = cat(v_1, …, v_n),   α = cat(α_1 1_{|w_1|}, …, α_n 1_{|w_n|})

the update ``w' = w − α ⊙ u(g, v)`` is one op per operation whatever n is; the model sees views
``w_i = w[o_i : o_i + |w_i|].view(shape_i)``, and ∇_w L is one tensor (the backward of ``split`` is
one ``cat``). A per-tensor hyperparameter is spread over its segment once per unroll (once per
schedule window), not once per step. The arithmetic per element is unchanged; only the sums over a
tensor's elements that give a per-tensor hypergradient are taken in another order (rounding).

Only for optimizers whose update is elementwise (:attr:`hypergradient.core.optimizer.Optimizer.elementwise`).
"""

from __future__ import annotations

from typing import Mapping, Sequence, cast

import torch

from .optimizer import Coefficient
from .tree import is_number

__all__ = ["FlatLayout"]


class FlatLayout:
    """Offsets of n tensors of the given shapes in one flat buffer of ``dtype`` on ``device``."""

    def __init__(self, shapes: Sequence[torch.Size], dtype: torch.dtype, device: torch.device):
        self.shapes = tuple(torch.Size(s) for s in shapes)
        self.sizes = tuple(s.numel() for s in self.shapes)
        self.dtype, self.device = dtype, device

    def pack(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """cat(x_1, …, x_n) as one 1-D tensor (differentiable: gradients reach every x_i)."""
        return torch.cat([x.reshape(-1) for x in xs])

    def unpack(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The n tensors as views into ``flat`` (differentiable: gradients reach ``flat``)."""
        return tuple(a.view(s) for a, s in zip(flat.split(self.sizes), self.shapes))

    def pack_fields(self, fields: Sequence[Sequence[torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
        """Each field (a tuple of n tensors, or empty) as a 1-tuple holding its flat buffer."""
        return [(self.pack(f),) if len(f) else () for f in fields]

    def unpack_fields(self, fields: Sequence[Sequence[torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
        return [self.unpack(f[0]) if len(f) else () for f in fields]

    def spread(self, values: Sequence[Coefficient]) -> Coefficient:
        """One value for the whole buffer from n per-tensor values (numbers or tensors that
        broadcast against their tensor): a shared number or 0-dim tensor is kept as it is;
        otherwise ``cat(broadcast(v_i, shape_i))``, so each element meets its tensor's value."""
        first = values[0]
        if is_number(first) and all(is_number(v) and v == first for v in values):
            return first
        if isinstance(first, torch.Tensor) and first.dim() == 0 and all(v is first for v in values):
            return first
        parts = [torch.full(s, float(v), dtype=self.dtype, device=self.device) if is_number(v)
                 else cast(torch.Tensor, v).expand(s) for v, s in zip(values, self.shapes)]
        return self.pack(parts)

    def spread_coefficients(self, coef: Mapping[str, Sequence[Coefficient]]) -> dict[str, tuple[Coefficient]]:
        """An optimizer's ``coef`` (name -> n per-tensor values) for the flat buffer (name -> 1-tuple)."""
        return {k: (self.spread(v),) for k, v in coef.items()}
