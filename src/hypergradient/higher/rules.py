"""The built-in differentiable optimizers of :mod:`hypergradient.higher.optim`: each group's values and
options, the state in torch's names, the library's rule (``optim/rules/``) run per tensor, or once on
all weights as a flat buffer (the flat strategy)."""

from __future__ import annotations

import collections
from typing import Any, Mapping, Sequence

import torch

from ..core.flat import FlatLayout
from ..core.optimizer import OPTIMIZERS
from ..core.problem import FLAT_MAX_MEAN
from ..optim.base import Rule, TensorOps
from .diffopt import STATE_NAMES, DifferentiableOptimizer

__all__ = ["RuleOptimizer", "DifferentiableSGD", "DifferentiableAdam", "DifferentiableAdamW", "DifferentiableAdadelta",
           "DifferentiableAdagrad", "DifferentiableAdamax", "DifferentiableASGD", "DifferentiableRMSprop",
           "DifferentiableRprop", "DifferentiableNAdam", "DifferentiableRAdam"]


class RuleOptimizer(DifferentiableOptimizer):
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
            names = _names(rule)
            for j, (p, g) in enumerate(zip(group["params"], grads)):
                if g is None:
                    continue                               # torch.optim skips a parameter without a gradient
                s = state[j]
                t = _next_step(s, names)
                new_p, new_s = rule.rule(TensorOps, t, p, g, _fields(rule, s, names, p), coef)
                for n, v in zip(names, new_s):
                    if v is not None:
                        s[n] = v
                s["step"] = t
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

        names = _names(rule)
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
        present = [[s.get(n) is not None for s in states] for n in names]
        if any(any(pr) and not all(pr) for pr in present) or \
                any(s.get(n) is not None and s[n].shape != p.shape for s, p in zip(states, params) for n in names):
            return False                     # partly fresh state, or torch's one-number-per-tensor entries
        n = sum(p.numel() for p in params)
        fresh = rule.init([torch.zeros(n, dtype=params[0].dtype, device=params[0].device)])
        s_flat = tuple(None if not len(fr) else _packed(flat, f, [s[f] for s in states]) if all(pr) else fr[0]
                       for f, pr, fr in zip(names, present, fresh))
        return self._flat_step(rule, rules, params, grads, names, flat, _next_step(states[0], names), s_flat)

    def _flat_step(self, rule: Rule, rules: list[tuple[Rule, dict[str, Any]]], params: list[torch.Tensor],
                   grads: list[Any], names: list[str], flat: dict[str, Any], t: int, s_flat: tuple[Any, ...]) -> bool:
        lay = flat["layout"]
        p_flat = _packed(flat, "params", params)
        g_flat = _packed(flat, "grads", grads)
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


def _names(rule: Rule) -> list[str]:
    """The rule's state fields under torch's names."""
    return [STATE_NAMES.get(f, f) for f in rule.init([])._fields]


def _next_step(s: Mapping[str, Any], names: Sequence[str]) -> int:
    """The 1-based index of the step about to be taken from torch's state dict ``s`` (SGD keeps no step
    count: 2 once its momentum buffer exists)."""
    if "step" in s:
        return int(s["step"]) + 1
    return 2 if any(s.get(n) is not None for n in names) else 1


def _fields(rule: Rule, s: Mapping[str, Any], names: Sequence[str], p: torch.Tensor) -> tuple[Any, ...]:
    """The rule's state fields for one tensor from torch's state dict: fresh ones (the rule's init)
    only where absent; torch's one-number-per-tensor entries broadcast to the tensor's shape."""
    fresh = None
    out = []
    for n in names:
        v = s.get(n)
        if v is None:
            fresh = fresh or rule.init([p])
            f = fresh[names.index(n)]
            out.append(f[0] if len(f) else None)
        else:
            out.append(v if v.shape == p.shape else v.expand_as(p).clone())
    return tuple(out)


def _packed(flat: dict[str, Any], key: str, xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """One flat buffer of ``xs``: last step's result when ``xs`` are still its views, else a copy."""
    views = flat["views"].get(key)
    if views is not None and len(views) == len(xs) and all(a is b for a, b in zip(views, xs)):
        return flat["buffers"][key]
    return flat["layout"].pack(list(xs))


def _make(name: str, torch_name: str) -> type[RuleOptimizer]:
    return type(f"Differentiable{torch_name}", (RuleOptimizer,), {"rule_class": OPTIMIZERS[name], "__module__": __name__,
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

