"""One reverse-mode product for every primitive: ``Σ_i c_i ∂o_i/∂x`` with zeros where nothing reaches x."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["grad_or_zero"]


def grad_or_zero(outputs: torch.Tensor | Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                 cotangents: Sequence[torch.Tensor | None] | None = None, *, create_graph: bool = False,
                 retain_graph: bool | None = None) -> list[torch.Tensor]:
    """[Σ_i ⟨c_i, ∂o_i/∂x⟩ for x in ``inputs``] by one ``torch.autograd.grad``.

    Only the pairs (o_i, c_i) whose output is in autograd's graph and whose cotangent is not ``None``
    take part (``cotangents=None``: scalar outputs, c_i = 1); an input that no live output reaches
    gets zeros of its shape, and so does every input when no output is live. DESIGN.md: a missing
    gradient is zero, not a crash."""
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    inputs = list(inputs)
    if cotangents is None:
        outs, cots = [o for o in outputs if o.requires_grad], None
    else:
        pairs = [(o, c) for o, c in zip(outputs, cotangents) if c is not None and o.requires_grad]
        outs, cots = [o for o, _ in pairs], [c for _, c in pairs]
    if not outs:
        return [torch.zeros_like(x) for x in inputs]
    return list(torch.autograd.grad(outs, inputs, cots, create_graph=create_graph, retain_graph=retain_graph,
                                    allow_unused=True, materialize_grads=True))
