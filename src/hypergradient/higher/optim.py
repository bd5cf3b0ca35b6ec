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
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..core.flat import FlatLayout
from ..core.optimizer import OPTIMIZERS
from ..core.problem import FLAT_MAX_MEAN
from ..optim.base import Rule, TensorOps

__all__ = ["DifferentiableOptimizer", "get_diff_optim", "create_diff_optim", "register_optim",
           "get_trainable_opt_params", "apply_trainable_opt_params"]

Override = Mapping[str, Sequence[Any]]
GradCallback = Callable[[list], list]

# torch's name of a state entry where it differs from the rule's field name
_STATE_NAMES = {"mu_prod": "mu_product"}
# group entries that choose torch's execution, not the result
_EXECUTION = ("foreach", "fused", "capturable", "differentiable")


def _expand_override(override: Override | None, n_groups: int) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for k, v in (override or {}).items():
        vals = list(v) if isinstance(v, (list, tuple)) and not (k in ("betas", "etas", "step_sizes")
                                                              and len(v) == 2 and not isinstance(v[0], (list, tuple)))\
            else [v]
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
        self._override = _expand_override(override, len(self.param_groups))
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
            self._apply_override(_expand_override(override, len(self.param_groups)))
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


class _RuleOptimizer(DifferentiableOptimizer):
    """A built-in differentiable optimizer: each group's values and options, the state in torch's
    names, the library's rule (``optim/rules/``) applied tensor by tensor."""

    rule_class: type[Rule]

    def _rule(self, group: Mapping[str, Any]) -> tuple[Rule, dict[str, Any]]:
        cls = self.rule_class
        values = cls.untuple({k: v for k, v in group.items() if k != "params"}, type(self).__name__)
        opts = {k: values[k] for k in cls.static_defaults() if k in values}
        coef = {k: values.get(k, cls.defaults[k]) for k in cls.hparam_names}
        key = tuple(sorted(opts.items()))
        cache = self.__dict__.setdefault("_rules", {})
        if key not in cache:
            cache[key] = cls(**opts)
        return cache[key], coef

    _flat: dict[str, Any] | None = None     # the flat strategy's buffers from the last step (see _update_flat)

    # The flat strategy keeps the state as flat buffers and writes the per-tensor entries (views) only
    # when someone reads ``state``: one view per tensor and field per step saved.
    @property
    def state(self) -> list[collections.defaultdict]:
        flat = self.__dict__.get("_flat")
        if flat is not None and flat.get("pending"):
            flat["pending"] = False
            states = self._per_tensor_states(self.__dict__["_state"])
            for n in flat["fields"]:
                vs = flat["layout"].unpack(flat["buffers"][n])
                flat["views"][n] = vs
                for st, x in zip(states, vs):
                    st[n] = x
            for st in states:
                st["step"] = flat["t"]
        return self.__dict__["_state"]

    @state.setter
    def state(self, value: list[collections.defaultdict]) -> None:
        self.__dict__["_state"] = value
        self.__dict__["_flat"] = None

    def _per_tensor_states(self, state: list[collections.defaultdict]) -> list[dict[str, Any]]:
        return [st[j] for st, g in zip(state, self.param_groups) for j in range(len(g["params"]))]

    def _update(self, grouped_grads: list[list[torch.Tensor | None]], **kwargs: Any) -> None:
        rules = [self._rule(group) for group in self.param_groups]
        if self._update_flat(rules, grouped_grads):
            return
        state_ = self.state          # written out if the flat strategy left it pending
        self._flat = None
        for (rule, coef), group, grads, state in zip(rules, self.param_groups, grouped_grads, state_):
            fields = rule.init([])._fields
            for j, (p, g) in enumerate(zip(group["params"], grads)):
                if g is None:
                    continue                               # torch.optim skips a parameter without a gradient
                s = state[j]
                fresh = rule.init([p])
                vals = tuple(_field(s, f, getattr(fresh, f), p) for f in fields)
                t = s["step"] + 1 if "step" in s else \
                    2 if any(s.get(_STATE_NAMES.get(f, f)) is not None for f in fields) else 1   # SGD keeps no step
                new_p, new_s = rule.rule(TensorOps, int(t), p, g, vals, coef)
                for f, v in zip(fields, new_s):
                    if v is not None:
                        s[_STATE_NAMES.get(f, f)] = v
                s["step"] = int(t)
                group["params"][j] = new_p

    # ---- the flat strategy -----------------------------------------------------------------------------
    # When every parameter has a gradient, one dtype and device and one step count, the groups differ
    # only in their values (one rule, its options shared) and the tensors are small on average (the
    # native layout="auto" rule, core.problem.FLAT_MAX_MEAN), the rule runs once on all weights as one flat
    # buffer (hypergradient.core.flat): a handful of ops per step instead of a handful per tensor, the
    # per-tensor values spread over the buffer (cached while the same objects come back), the new fast
    # weights and state entries views into the results. The same elementwise arithmetic as per tensor.
    def _grads(self, loss: torch.Tensor, params: list[torch.Tensor]) -> Sequence[torch.Tensor | None]:
        flat = self._flat
        views = flat["views"].get("params") if flat else None
        if flat is None or views is None or len(views) != len(params) or any(a is not b for a, b in zip(views, params)):
            return super()._grads(loss, params)
        # the fast weights are views into last step's flat result: one gradient for the whole buffer
        g, = torch.autograd.grad(loss, flat["buffers"]["params"], create_graph=self._track_higher_grads)
        grads = flat["layout"].unpack(g)
        flat["buffers"]["grads"], flat["views"]["grads"] = g, grads
        return grads

    def _update_flat(self, rules: list[tuple[Rule, dict[str, Any]]], grouped_grads: list[list[torch.Tensor | None]]
                     ) -> bool:
        rule = rules[0][0]
        if not rule.elementwise or any(r is not rule for r, _ in rules[1:]):
            return False
        params = [p for g in self.param_groups for p in g["params"]]
        grads = [g for gs in grouped_grads for g in gs]
        if not params or any(g is None for g in grads) or len({(p.dtype, p.device) for p in params}) != 1:
            return False
        if sum(p.numel() for p in params) > FLAT_MAX_MEAN * len(params):
            return False              # large tensors: copying them into one buffer costs more than it saves

        fields = rule.init([])._fields
        names = [_STATE_NAMES.get(f, f) for f in fields]
        flat = self._flat
        shapes = tuple(p.shape for p in params)
        if flat is not None and flat.get("pending") and flat["shapes"] == shapes and flat["rule"] is rule:
            return self._flat_step(rule, rules, params, grads, names, flat, flat["t"] + 1,
                                   tuple(flat["buffers"].get(n) for n in names))
        states = self._per_tensor_states(self.state)
        if len({s.get("step") for s in states}) != 1:
            return False
        if flat is None or flat["shapes"] != shapes:
            flat = {"shapes": shapes, "layout": FlatLayout(list(shapes), params[0].dtype, params[0].device),
                    "views": {}, "buffers": {}, "coef": {}}
        lay = flat["layout"]

        def packed(key: str, xs: list[Any]) -> torch.Tensor | None:
            views = flat["views"].get(key)
            if views is not None and len(views) == len(xs) and all(a is b for a, b in zip(views, xs)):
                return flat["buffers"][key]            # last step's result, still in place
            return None if any(x is None for x in xs) else lay.pack(xs)
        present = [[s.get(n) is not None for s in states] for n in names]
        if any(any(pr) and not all(pr) for pr in present):
            return False
        t = states[0]["step"] + 1 if "step" in states[0] else 2 if any(all(pr) for pr in present) else 1
        n = sum(p.numel() for p in params)
        fresh = rule.init([torch.zeros(n, dtype=params[0].dtype, device=params[0].device)])
        s_flat = tuple(None if not len(fr) else packed(f, [s.get(f) for s in states]) if all(pr) else fr[0]
                       for f, pr, fr in zip(names, present, fresh))
        s_flat = tuple(v if v is None or v.shape == (n,) else None for v in s_flat)
        if any(v is None and len(fr) for v, fr in zip(s_flat, fresh)):
            return False                                # a state entry of another shape (torch's scalars)
        return self._flat_step(rule, rules, params, grads, names, flat, int(t), s_flat)

    def _flat_step(self, rule: Rule, rules: list[tuple[Rule, dict[str, Any]]], params: list[torch.Tensor],
                   grads: list[Any], names: list[str], flat: dict[str, Any], t: int, s_flat: tuple[Any, ...]) -> bool:
        lay = flat["layout"]

        def packed(key: str, xs: list[Any]) -> torch.Tensor:
            views = flat["views"].get(key)
            if views is not None and len(views) == len(xs) and all(a is b for a, b in zip(views, xs)):
                return flat["buffers"][key]
            return lay.pack(xs)
        p_flat = packed("params", params)
        g_flat = packed("grads", grads)
        per_tensor: dict[str, list[Any]] = {k: [] for k in rules[0][1]}
        for (_, coef), g in zip(rules, self.param_groups):
            for k, v in coef.items():
                per_tensor[k].extend([v] * len(g["params"]))
        c_flat = {}
        for k, vs in per_tensor.items():
            hit = flat["coef"].get(k)
            if hit is not None and len(hit[0]) == len(vs) and all(a is b for a, b in zip(hit[0], vs)):
                c_flat[k] = hit[1]
            else:
                c_flat[k] = lay.spread(vs)
                flat["coef"][k] = (vs, c_flat[k])
        new_p, new_s = rule.rule(TensorOps, int(t), p_flat, g_flat, s_flat, c_flat)
        views = lay.unpack(new_p)
        flat["buffers"]["params"], flat["views"]["params"] = new_p, views
        flat["fields"] = [n for n, v in zip(names, new_s) if v is not None]
        for n, v in zip(names, new_s):
            if v is not None:
                flat["buffers"][n] = v
        flat.update(pending=True, t=int(t), rule=rule)
        i = 0
        for g in self.param_groups:
            for j in range(len(g["params"])):
                g["params"][j] = views[i]
                i += 1
        self._flat = flat
        return True


def _field(s: Mapping[str, Any], name: str, fresh: tuple[torch.Tensor, ...], p: torch.Tensor) -> Any:
    """The rule's state field ``name`` for one tensor from torch's state dict (a fresh value when absent;
    torch's one-number-per-tensor entries broadcast to the tensor's shape)."""
    if not fresh:
        return None
    v = s.get(_STATE_NAMES.get(name, name))
    if v is None:
        return fresh[0]
    return v if v.shape == p.shape else v.expand_as(p).clone()


def _make(name: str, torch_name: str) -> type[_RuleOptimizer]:
    return type(f"Differentiable{torch_name}", (_RuleOptimizer,), {"rule_class": OPTIMIZERS[name], "__module__": __name__,
                                                                   "__doc__": f"torch.optim.{torch_name}, differentiable."})


DifferentiableSGD = _make("sgd", "SGD")
DifferentiableAdam = _make("adam", "Adam")
DifferentiableAdamW = _make("adamw", "AdamW")
DifferentiableAdadelta = _make("adadelta", "Adadelta")
DifferentiableAdagrad = _make("adagrad", "Adagrad")
DifferentiableAdamax = _make("adamax", "Adamax")
DifferentiableASGD = _make("asgd", "ASGD")
DifferentiableRMSprop = _make("rmsprop", "RMSprop")
DifferentiableRprop = _make("rprop", "Rprop")
DifferentiableNAdam = _make("nadam", "NAdam")
DifferentiableRAdam = _make("radam", "RAdam")

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
    keys = [k for k in opt.param_groups[0] if k != "params" and k not in _EXECUTION]
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
    for k, vals in _expand_override(override, len(groups)).items():
        for g, v in zip(groups, vals):
            g[k] = _as_type(v, g[k]) if k in g else v
