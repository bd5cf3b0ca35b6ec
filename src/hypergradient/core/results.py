"""Getting results out of an inner problem: the trained network as the user's own module, and the
learned λ as plain values by hyperparameter name (the methods :meth:`InnerProblem.module_at`,
:meth:`InnerProblem.learned` and :meth:`InnerProblem.final_state` call these)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from .state import State
from .types import HparamsLike

if TYPE_CHECKING:
    from .problem import InnerProblem

__all__ = ["module_at", "learned", "load_into"]


def load_into(module: nn.Module, values: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy ``values`` (parameter or buffer name → tensor) into ``module`` in place, without autograd;
    a name that is neither a parameter nor a buffer of the module is an error. Returns the module."""
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    with torch.no_grad():
        for name, v in values.items():
            target = params.get(name, buffers.get(name))
            if target is None:
                raise KeyError(f"{name!r} is neither a parameter nor a buffer of {type(module).__name__}")
            if target.shape != v.shape:
                raise ValueError(f"{name!r}: the module's tensor has shape {tuple(target.shape)}, the value "
                                 f"{tuple(v.shape)}")
            target.copy_(v.detach())
    return module


def module_at(problem: "InnerProblem", state: State, hparams: HparamsLike | None = None) -> nn.Module:
    """A copy of the user's module (``copy.deepcopy``; the original is untouched) holding the inner
    weights w of ``state``, its buffers (BatchNorm's running statistics and ``num_batches_tracked``
    included), the frozen weights, and the model parts that are hyperparameters (``Hypers(model=...)``,
    read from ``hparams``, which is then required)."""
    if problem.spec.model and hparams is None:
        raise ValueError(f"the model parts {sorted(problem.spec.model)} are hyperparameters: pass λ, "
                         "problem.module_at(state, lam)")
    if len(state.params) != len(problem.names):
        raise ValueError(f"the state holds {len(state.params)} weights, the problem {len(problem.names)}: "
                         "pass a state of this problem (problem.final_state(lam), problem.run(...)[0])")
    values: dict[str, torch.Tensor] = {**problem._frozen, **problem.params_dict(state), **state.buffers}
    if hparams is not None:
        values.update(problem.spec.model_values(hparams))
    return load_into(copy.deepcopy(problem.module), values)


def _plain(x: Any, scheduled: bool) -> Any:
    """A float for a number or a 0-dim tensor, a list of floats for a schedule of numbers
    (one value per window), else a detached copy of the tensor."""
    if not isinstance(x, torch.Tensor):
        return float(x)
    x = x.detach()
    if x.dim() == 0:
        return float(x)
    if scheduled and x.dim() == 1:
        return [float(v) for v in x]
    return x.clone()


def learned(problem: "InnerProblem", hparams: HparamsLike) -> dict[str, Any]:
    """λ by hyperparameter name as plain values, in the constrained space (after ``positive=``):

    - each optimizer hyperparameter (learned or constant): a float, a list of K floats for a schedule,
      a tensor for element-wise values, or ``{weight name: value}`` where it differs between weights
      (per group, per tensor);
    - each loss hyperparameter: a float (or a tensor, if it has a shape);
    - each hyperparameter module: a copy of the module given to ``Hypers(modules=...)`` holding its
      learned weights, under its own parameter names (no ``loss.<name>.`` prefix);
    - each model part (``Hypers(model=...)``): its tensor, under the model's parameter name.
    """
    spec, view = problem.spec, problem.hparams_view(hparams)
    out: dict[str, Any] = {}
    for name in spec.optimizer.hparam_names:
        scheduled = {w for n, h, ws in spec.leaves.values() if n == name and (h.schedule is not None or h.block is not None)
                     for w in ws}                      # per weight: another group's schedule is not this one's
        v = view[name]
        out[name] = ({p: _plain(x, p in scheduled) for p, x in v.items()} if isinstance(v, Mapping)
                     else _plain(v, bool(scheduled)))
    for name in spec.loss_specs:
        out[name] = _plain(view[name], False)
    for name, (_, keys, module) in spec.modules.items():
        out[name] = load_into(copy.deepcopy(module), {n: hparams[k] for n, k in keys.items()})
    for name in spec.model:
        out[name] = hparams[f"model.{name}"].detach().clone()
    return out
