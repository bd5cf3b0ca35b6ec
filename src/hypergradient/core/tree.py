"""Small helpers on the structures the library passes around: λ-shaped dicts and lists of tensors."""

from __future__ import annotations

from typing import Mapping, Sequence, TypeGuard, cast

import torch

__all__ = ["is_number", "detached", "zeros_like", "dot", "flatten"]


def is_number(x: object) -> TypeGuard[int | float]:
    """True for a Python int or float (not a bool): a hyperparameter value that is a constant."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def detached(lam: Mapping[str, torch.Tensor], requires_grad: bool = False) -> dict[str, torch.Tensor]:
    """λ's leaves detached from any graph, as fresh leaves when ``requires_grad``."""
    if requires_grad:
        return {k: v.detach().requires_grad_() for k, v in lam.items()}
    return {k: v.detach() for k, v in lam.items()}


def zeros_like(lam: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A λ-shaped dict of zeros."""
    return {k: torch.zeros_like(v) for k, v in lam.items()}


def dot(a: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        b: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """⟨a, b⟩ = Σ_i Σ (a_i ⊙ b_i) over aligned lists of tensors, or over λ-shaped dicts (b keyed like a)."""
    if isinstance(a, Mapping):
        b = [cast(Mapping[str, torch.Tensor], b)[k] for k in a]
        a = list(a.values())
    # a Tensor for any non-empty input (sum's start value 0 is only returned for empty lists)
    return cast(torch.Tensor, sum((x * y).sum() for x, y in zip(a, cast(Sequence[torch.Tensor], b))))


def flatten(x: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
    """All entries concatenated (a dict in its key order) as one 1-D tensor."""
    values = x.values() if isinstance(x, Mapping) else x
    return torch.cat([v.reshape(-1) for v in values])
