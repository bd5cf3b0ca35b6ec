"""higher's differentiable-optimizer protocol (:class:`DifferentiableOptimizer`): the param groups and
state copied from a live ``torch.optim`` optimizer, ``step(loss)`` taking the gradient and handing it,
grouped as the param groups are, to ``_update``. See :mod:`hypergradient.higher.optim`."""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

__all__ = ["DifferentiableOptimizer", "Override", "GradCallback", "expand_override", "STATE_NAMES", "EXECUTION"]

Override = Mapping[str, Sequence[Any]]
GradCallback = Callable[[list], list]

# torch's name of a state entry where it differs from the rule's field name
STATE_NAMES = {"mu_prod": "mu_product"}
# group entries that choose torch's execution, not the result
EXECUTION = ("foreach", "fused", "capturable", "differentiable")


def expand_override(override: Override | None, n_groups: int) -> dict[str, list[Any]]:
    """higher's override format: name -> a list of one value (every group) or one per group."""
    out: dict[str, list[Any]] = {}
    for k, v in (override or {}).items():
        vals = list(v) if isinstance(v, list) else [v]
        if len(vals) == 1:
            vals = vals * n_groups
        if len(vals) != n_groups:
            raise ValueError(f"override[{k!r}] has {len(vals)} values for {n_groups} param groups; give one "
                             "(broadcast to every group) or one per group")
        out[k] = vals
    return out


class DifferentiableOptimizer:
    """higher's differentiable optimizer protocol (see the module docstring)."""

    def __init__(self, other: torch.optim.Optimizer, reference_params: Iterable[torch.Tensor], fmodel: Any = None,
                 device: torch.device | str | None = None, override: Override | None = None,
                 grad_callback: GradCallback | None = None, track_higher_grads: bool = True, **kwargs: Any) -> None:
        reference_params = list(reference_params)
        index = {id(p): i for i, p in enumerate(reference_params)}
        self.param_groups: list[dict[str, Any]] = []
        self._group_to_param_list: list[list[int]] = []
        self.state: list[collections.defaultdict] = []
        for g in other.param_groups:
            idx = []
            for p in g["params"]:
                if id(p) not in index:
                    raise ValueError("the optimizer holds a tensor that is not among reference_params (pass "
                                     "module.parameters() of the module it optimizes)")
                idx.append(index[id(p)])
            self._group_to_param_list.append(idx)
            self.param_groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": [None] * len(idx)})
            st: collections.defaultdict = collections.defaultdict(dict)
            for j, p in enumerate(g["params"]):
                if p in other.state:
                    st[j] = {k: (v.detach().clone().to(device or v.device) if isinstance(v, torch.Tensor) else v)
                             for k, v in other.state[p].items()}
            self.state.append(st)
        self._fmodel = fmodel
        self._track_higher_grads = track_higher_grads
        self._grad_callback = grad_callback
        self._override = expand_override(override, len(self.param_groups))
        self._n = len(reference_params)

    def _apply_override(self, override: dict[str, list[Any]]) -> None:
        for k, vals in override.items():
            for g, v in zip(self.param_groups, vals):
                g[k] = v

    def step(self, loss: torch.Tensor, params: Iterable[torch.Tensor] | None = None, override: Override | None = None,
             grad_callback: GradCallback | None = None, **kwargs: Any) -> list[torch.Tensor]:
        """One update of the fast weights from ``loss``; returns the new fast weights (and sets them on
        the patched module when there is one)."""
        if params is None:
            if self._fmodel is None or self._fmodel.fast_params is None:
                raise ValueError("give params=[...]: this differentiable optimizer has no patched module")
            params = self._fmodel.fast_params
        params = list(params)
        if len(params) != self._n:
            raise ValueError(f"step got {len(params)} parameters for {self._n} reference parameters")
        self._apply_override(self._override)
        if override is not None:
            self._apply_override(expand_override(override, len(self.param_groups)))
        train = [i for i, p in enumerate(params) if p.requires_grad]
        grads: list[torch.Tensor | None] = [None] * len(params)
        if train:
            got = self._grads(loss, [params[i] for i in train])
            for i, g in zip(train, got):
                grads[i] = g
        callback = grad_callback or self._grad_callback
        if callback is not None:
            grads = list(callback(grads))
        grouped = []
        for group, idx in zip(self.param_groups, self._group_to_param_list):
            group["params"] = [params[i] for i in idx]
            grouped.append([grads[i] for i in idx])
        self._update(grouped, **kwargs)
        new = list(params)
        for group, idx in zip(self.param_groups, self._group_to_param_list):
            for j, i in enumerate(idx):
                p = group["params"][j]
                new[i] = p if self._track_higher_grads or not isinstance(p, torch.Tensor) or not p.requires_grad \
                    else p.detach().requires_grad_()
        if self._fmodel is not None:
            self._fmodel.fast_params = new
        return new

    def _grads(self, loss: torch.Tensor, params: list[torch.Tensor]) -> Sequence[torch.Tensor | None]:
        """∂loss/∂params (None where unused), with the graph while tracking higher-order gradients."""
        return torch.autograd.grad(loss, params, create_graph=self._track_higher_grads, allow_unused=True)

    def _update(self, grouped_grads: list[list[torch.Tensor | None]], **kwargs: Any) -> None:
        """Write the new fast weights into ``self.param_groups[g]["params"][j]`` (and the state into
        ``self.state[g][j]``) from the gradients ``grouped_grads[g][j]`` (None: unused, left as is)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update(grouped_grads, **kwargs): the new "
                                  "fast weights into self.param_groups[g]['params'][j], from the gradients grouped "
                                  "as the param groups (as higher's DifferentiableOptimizer subclasses do)")

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The per-group values (without the fast weights) and the state, as references: detach / clone
        what you save."""
        return {"param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
                "state": [{j: dict(s) for j, s in st.items()} for st in self.state]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        groups, state = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self.param_groups) or len(state) != len(self.state):
            raise ValueError(f"the state has {len(groups)} param groups; this optimizer has {len(self.param_groups)}")
        for g, saved in zip(self.param_groups, groups):
            g.update(saved)
        self.state = [collections.defaultdict(dict, {int(j): dict(s) for j, s in st.items()}) for st in state]

    def detach_(self) -> None:
        """Cut the graph through the optimizer state (moments, buffers) for truncated meta-learning;
        with ``fmodel.start_window()`` the next window starts at time 0 with the state kept."""
        for st in self.state:
            for s in st.values():
                for k, v in s.items():
                    if isinstance(v, torch.Tensor):
                        s[k] = v.detach()


