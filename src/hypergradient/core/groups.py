"""Param groups, as ``torch.optim`` takes them, resolved to the inner weights' names.

A group lists its parameters as the module's tensors (``model.head.parameters()``), parameter names
or glob patterns (``"body.*"``); every inner weight must be in exactly one group, as torch.optim
requires of what it optimizes. Parameters that are not inner weights (λ's model parts, frozen ones) are
left out of the groups they are listed in.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .functional import select

__all__ = ["resolve_groups"]


def resolve_groups(groups: Sequence[Mapping[str, Any]], named: Mapping[str, torch.Tensor],
                   trained: Sequence[str]) -> list[tuple[str, tuple[str, ...], Mapping[str, Any]]]:
    """(name, inner weights in model order, values) per group of ``optimizer.groups``; ``named`` are the
    model's parameters (tensor identity identifies a tensor), ``trained`` the inner weights."""
    by_id = {id(p): n for n, p in named.items()}
    owner: dict[str, str] = {}
    out = []
    for g in groups:
        picked: list[str] = []
        for item in g["params"]:
            if isinstance(item, torch.Tensor):
                if id(item) not in by_id:
                    raise ValueError(f"param group {g['name']!r} holds a tensor of shape {tuple(item.shape)} that is not a "
                                     "parameter of the model given to the inner problem; list the model's own "
                                     "parameters (model.parameters()) or their names")
                picked.append(by_id[id(item)])
            elif isinstance(item, str):
                picked.extend(select(list(named), item))
            else:
                raise TypeError(f"param group {g['name']!r}: 'params' holds {type(item).__name__}; give tensors, "
                                "parameter names or glob patterns")
        mine = set(picked) & set(trained)
        for n in mine:
            if n in owner:
                raise ValueError(f"parameter {n!r} is in param groups {owner[n]!r} and {g['name']!r}; "
                                 "each parameter goes in one group (torch.optim requires the same)")
            owner[n] = g["name"]
        if not mine:
            raise ValueError(f"param group {g['name']!r} holds no inner weight (its parameters are hyperparameters or "
                             "frozen); drop the group")
        out.append((g["name"], tuple(n for n in trained if n in mine), g["values"]))
    missing = [n for n in trained if n not in owner]
    if missing:
        raise ValueError(f"the inner weights {missing} are in no param group; add them to a group (or freeze them "
                         "with requires_grad=False, or make them hyperparameters with Hypers(model=...))")
    return out
