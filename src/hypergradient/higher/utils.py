"""``higher.utils``: small helpers of higher's public API."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["get_func_params", "flatten"]


def get_func_params(module: nn.Module, device: torch.device | str | None = None, safe_copy: bool = True
                    ) -> list[torch.Tensor]:
    """Detached copies of ``module``'s parameters (``named_parameters()`` order) that require grad
    (without ``safe_copy``, detached views sharing their memory)."""
    out = []
    for p in module.parameters():
        q = p.detach().clone() if safe_copy else p.detach()
        out.append(q.to(device or q.device).requires_grad_())
    return out


def flatten(x: Any) -> list[Any]:
    """The leaves of a nested structure of lists, tuples and dicts (dict values in order), depth first."""
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in flatten(item)]
    if isinstance(x, dict):
        return [y for item in x.values() for y in flatten(item)]
    return [x]
