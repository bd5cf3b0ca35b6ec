"""``higher.optim``: a live ``torch.optim`` optimizer turned into a differentiable one.

A :class:`DifferentiableOptimizer` copies the optimizer's param groups (with every value in them,
tensors included and never detached) and its current state (step counts, moments, momentum buffers).
``step(loss)`` takes the gradient of ``loss`` with respect to the current fast weights (keeping the
graph while tracking higher-order gradients), applies ``grad_callback``, and runs ``_update`` on the
gradients grouped as the param groups are; the new fast weights go to the patched module. The
built-in subclasses run the library's own rules (:mod:`hypergradient.optim`, each reproducing
``torch.optim``): one implementation, the same numbers as the native API. A user's subclass that
writes its own ``_update(grouped_grads, **kwargs)`` against ``self.param_groups`` (``group["params"]``
the current fast weights) and ``self.state[group][index]`` (a dict) works as with higher.

Fixed on the way (each tested): AdamW and NAdam / RAdam are supported; RMSprop is torch's; Adam's
√0 has a finite derivative under double backward; tensors placed in param groups are differentiated;
the state is readable and loadable (``state_dict``) and can be cut for truncated meta-learning
(``detach_``).
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping

import torch

from .diffopt import EXECUTION, DifferentiableOptimizer, Override, expand_override
from .rules import (DifferentiableAdadelta, DifferentiableAdagrad, DifferentiableAdam, DifferentiableAdamax,
                    DifferentiableAdamW, DifferentiableASGD, DifferentiableNAdam, DifferentiableRAdam,
                    DifferentiableRMSprop, DifferentiableRprop, DifferentiableSGD, RuleOptimizer)

__all__ = ["DifferentiableOptimizer", "get_diff_optim", "create_diff_optim", "register_optim",
           "get_trainable_opt_params", "apply_trainable_opt_params"]
_RuleOptimizer = RuleOptimizer   # the built-ins' base (tests switch its flat strategy off)

# exact types: torch's AdamW subclasses Adam, so a lookup by isinstance would take the wrong one
_OPTIM_TYPES: dict[type, type[DifferentiableOptimizer]] = {
    torch.optim.SGD: DifferentiableSGD, torch.optim.Adam: DifferentiableAdam, torch.optim.AdamW: DifferentiableAdamW,
    torch.optim.Adadelta: DifferentiableAdadelta, torch.optim.Adagrad: DifferentiableAdagrad,
    torch.optim.Adamax: DifferentiableAdamax, torch.optim.ASGD: DifferentiableASGD,
    torch.optim.RMSprop: DifferentiableRMSprop, torch.optim.Rprop: DifferentiableRprop,
    torch.optim.NAdam: DifferentiableNAdam, torch.optim.RAdam: DifferentiableRAdam}
__all__ += [c.__name__ for c in _OPTIM_TYPES.values()]


def register_optim(optim_type: type, diff_optim_type: type) -> None:
    """Use ``diff_optim_type`` (a subclass of this module's :class:`DifferentiableOptimizer` that
    implements ``_update``) for optimizers of exactly ``optim_type``."""
    if not (isinstance(diff_optim_type, type) and issubclass(diff_optim_type, DifferentiableOptimizer)):
        raise TypeError(f"{diff_optim_type!r} is not a subclass of hypergradient.higher.optim.DifferentiableOptimizer "
                        "(a subclass of the original higher's class cannot run here): derive it from ours, whose "
                        "_update(grouped_grads, **kwargs) protocol is the same")
    if diff_optim_type._update is DifferentiableOptimizer._update:
        raise TypeError(f"{diff_optim_type.__name__} does not implement _update(grouped_grads, **kwargs)")
    _OPTIM_TYPES[optim_type] = diff_optim_type


def _lookup(opt_type: type) -> type[DifferentiableOptimizer]:
    if opt_type not in _OPTIM_TYPES:
        raise ValueError(f"no differentiable version of {opt_type.__name__}: supported are "
                         f"{sorted(t.__name__ for t in _OPTIM_TYPES)}; register one with register_optim(type, "
                         "DifferentiableOptimizer subclass)")
    return _OPTIM_TYPES[opt_type]


def get_diff_optim(opt: torch.optim.Optimizer, reference_params: Iterable[torch.Tensor], fmodel: Any = None,
                   device: torch.device | str | None = None, override: Override | None = None,
                   track_higher_grads: bool = True, **kwargs: Any) -> DifferentiableOptimizer:
    """A differentiable copy of the live optimizer ``opt`` (its groups and current state)."""
    return _lookup(type(opt))(opt, reference_params, fmodel=fmodel, device=device, override=override,
                              track_higher_grads=track_higher_grads, **kwargs)


def create_diff_optim(opt_type: type, opt_kwargs: Mapping[str, Any] | None = None, params: Any = None,
                      fmodel: Any = None, device: torch.device | str | None = None, override: Override | None = None,
                      track_higher_grads: bool = True, **kwargs: Any) -> DifferentiableOptimizer:
    """A differentiable optimizer of a new ``opt_type(params, **opt_kwargs)`` (``params``: the fast
    weights or param groups of them; ``fmodel.parameters()`` when omitted)."""
    if params is None:
        if fmodel is None:
            raise ValueError("give params or fmodel")
        params = list(fmodel.parameters())
    items = list(params)
    groups = items if items and isinstance(items[0], Mapping) else [{"params": items}]
    # a throwaway optimizer over detached stand-ins gives the groups torch would build (its defaults)
    stand = [{**g, "params": [p.detach().clone().requires_grad_() for p in g["params"]]} for g in groups]
    opt = opt_type(stand, **dict(opt_kwargs or {}))
    reference = [p for g in opt.param_groups for p in g["params"]]
    diff = _lookup(opt_type)(opt, reference, fmodel=fmodel, device=device, override=override,
                             track_higher_grads=track_higher_grads, **kwargs)
    diff._n = len(reference)
    return diff


def _trainable(v: Any, device: torch.device | str | None) -> Any:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return torch.tensor(float(v), device=device, requires_grad=True)
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.detach().clone().to(device or v.device).requires_grad_()
    if isinstance(v, (tuple, list)):
        parts = [_trainable(x, device) for x in v]
        return None if any(x is None for x in parts) else type(v)(parts)
    return None


def get_trainable_opt_params(opt: torch.optim.Optimizer, device: torch.device | str | None = None
                             ) -> dict[str, list[Any]]:
    """An override dict of learnable tensors (requiring grad) initialised from the numeric values in
    ``opt``'s param groups (floats, ints, tuples of them such as ``betas``); bools, None and options
    that choose torch's execution are left out."""
    out: dict[str, list[Any]] = collections.defaultdict(list)
    keys = [k for k in opt.param_groups[0] if k != "params" and k not in EXECUTION]
    for k in keys:
        vals = [_trainable(g.get(k), device) for g in opt.param_groups]
        if all(v is not None for v in vals):
            out[k] = vals
    return out


def _as_type(new: Any, old: Any) -> Any:
    if isinstance(old, (tuple, list)):
        return type(old)(_as_type(n, o) for n, o in zip(new, old))
    if isinstance(new, torch.Tensor) and not isinstance(old, torch.Tensor):
        return type(old)(new.item())
    return new


def apply_trainable_opt_params(opt: torch.optim.Optimizer, override: Override) -> None:
    """Write learned values back into ``opt``'s param groups, each of its original Python type
    (floats stay floats, ``betas`` a tuple of floats)."""
    groups = opt.param_groups
    for k, vals in expand_override(override, len(groups)).items():
        for g, v in zip(groups, vals):
            g[k] = _as_type(v, g[k]) if k in g else v

