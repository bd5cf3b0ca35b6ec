"""Hyperparameters λ as explicit tensors: optimizer hyperparameters in four granularities, with an
optional per-step schedule and a positivity reparametrization, plus free loss hyperparameters and
hyperparameter modules (loss-weighting networks, data transforms).

λ is a flat ``dict[str, Tensor]`` of *raw* leaves; every estimator returns its hypergradient in the
same structure, taken with respect to the raw values. Keys:

    ``optim.lr``               scalar (one value for all parameter tensors, or all groups that inherit it)
    ``optim.lr@head``          one value for the param group ``head`` (a group's own ``Hyper``, or
                               granularity ``"group"``: one per group)
    ``optim.lr[body.0.weight]`` per-tensor (shape ()) or element-wise (shape of the parameter)
    ``model.body.0.weight``    a part of the model that is a hyperparameter (ANIL's body)
    ``loss.l2``                a free tensor used by the losses
    ``loss.mwn.0.weight``      a parameter of a hyperparameter module used by the losses

Schedules (non-greedy paper, Section 4, "sharing"): with ``schedule=K`` a hyperparameter holds K
values along a leading axis and step t = 1..T uses value ``floor(K (t−1) / T)``, so the schedule is a
function of the fraction of training; with ``block=B`` it holds one value per B contiguous steps and
must have ``ceil(T / B)`` of them. The hypergradient of a shared value is the exact derivative, i.e.
the *sum* over its window; the paper reports the mean (Appendix, "Strictly speaking...") — use
:meth:`HyperSpec.window_lengths` to divide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .deprecation import renamed_attributes
from .functional import FunctionalModel, uncompiled
from .optimizer import TORCH_RANGES, Coefficient, Optimizer
from .view import HyperView
from .types import Hparams, HparamsLike

__all__ = ["Hyper", "HyperSpec", "HyperView"]

GRANULARITIES = ("scalar", "group", "tensor", "element")
ENFORCE = ("init", "clip", "raise")
# positive -> (raw -> value, value -> raw)
TRANSFORMS: dict[str | None, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    None: (lambda r: r, lambda x: x),
    "softplus": (F.softplus, lambda x: x + torch.log(-torch.expm1(-x))),
    "exp": (torch.exp, torch.log),
}


@dataclass(frozen=True)
class Hyper:
    """A learnable hyperparameter.

    Args:
        init: initial value (in the constrained space): a float, a tensor, or for ``"tensor"`` /
            ``"element"`` granularity a mapping from parameter name to value.
        granularity: ``"scalar"`` | ``"group"`` (one per param group of the optimizer) | ``"tensor"``
            (one per parameter tensor) | ``"element"`` (Meta-SGD).
        schedule: K values stretched over the horizon (step t uses ``floor(K (t−1)/T)``).
        block: alternatively, one value per ``block`` contiguous steps.
        positive: ``None`` | ``"softplus"`` | ``"exp"``; λ holds the raw value r and the
            hyperparameter is softplus(r) or exp(r); hypergradients are taken w.r.t. r.
        bounds: where an optimizer hyperparameter may lie: ``"torch"`` (where ``torch.optim`` accepts it:
            lr, momentum, weight decay, eps ≥ 0, betas in [0, 1)), ``(lo, hi)``, or ``None`` (anywhere: a
            signed search such as Meta-SGD's rates of either sign). The initial value is always checked.
        enforce: what happens when the learned value leaves ``bounds`` during training: ``"init"`` (nothing:
            only the initial value is checked), ``"clip"`` (each step uses it clamped into the bounds; its
            hypergradient is then zero outside them) or ``"raise"`` (ValueError naming the step).
    """

    init: object = 0.0
    granularity: str = "scalar"
    schedule: int | None = None
    block: int | None = None
    positive: str | None = None
    bounds: str | tuple[float, float] | None = "torch"
    enforce: str = "init"

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.positive not in TRANSFORMS:
            raise ValueError(f"positive must be None, 'softplus' or 'exp', got {self.positive!r}")
        if self.schedule is not None and self.block is not None:
            raise ValueError("give either schedule=K (stretched over the horizon) or block=B, not both")
        for k in ("schedule", "block"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        if not (self.bounds in ("torch", None) or (isinstance(self.bounds, tuple) and len(self.bounds) == 2
                                                    and float(self.bounds[0]) < float(self.bounds[1]))):
            raise ValueError(f"bounds must be 'torch', None or (lo, hi) with lo < hi, got {self.bounds!r}")
        if self.enforce not in ENFORCE:
            raise ValueError(f"enforce must be one of {ENFORCE}, got {self.enforce!r}")
        if self.enforce != "init" and self.bounds is None:
            raise ValueError(f"enforce={self.enforce!r} needs bounds ('torch' or (lo, hi))")


def _check_dtype(name: str, x: object) -> None:
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise TypeError(f"hyperparameter {name!r} has dtype {x.dtype}; hyperparameters must be real "
                        "floating point (e.g. torch.tensor(0.1, dtype=torch.float64))")
    if isinstance(x, complex):
        raise TypeError(f"hyperparameter {name!r} is complex; use a real float")


def _range(name: str, h: Hyper) -> tuple[float, float, bool] | None:
    """(low, high, high included) of ``h.bounds`` for the hyperparameter ``name``, or None."""
    if isinstance(h.bounds, tuple):
        return float(h.bounds[0]), float(h.bounds[1]), True
    return TORCH_RANGES.get(name) if h.bounds == "torch" else None


def _extremes(init: object) -> tuple[float, float]:
    """(min, max) of an initial value: a number, a tensor or a mapping of them."""
    values = list(init.values()) if isinstance(init, Mapping) else [init]
    flat = torch.cat([torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in values])
    return float(flat.min()), float(flat.max())


class HyperSpec:
    """Specification of λ for one inner problem; builds the raw leaves and resolves them per step.

    Args:
        optimizer: the inner optimizer, carrying its values (name -> float, a constant, or
            :class:`Hyper`, learned) for its ``hparam_names``.
        param_names: the inner weights w (targets of optimizer hyperparameters).
        param_shapes: name -> shape of each inner weight.
        groups: the optimizer's param groups resolved to the weights' names (name, weights, own values);
            None: one group of every weight.
        model: name -> tensor for the model parts that are hyperparameters.
        loss: name -> tensor, float or :class:`Hyper` (scalar or any shape, optional ``positive``).
        modules: name -> nn.Module whose parameters are hyperparameters used by the losses.
        horizon: T, needed by schedules.
    """

    def __init__(self, optimizer: Optimizer, param_names: Iterable[str], param_shapes: Mapping[str, Sequence[int]],
                 *, groups: Sequence[tuple[str, Sequence[str], Mapping[str, Any]]] | None = None,
                 model: Mapping[str, torch.Tensor] | None = None,
                 loss: Mapping[str, float | torch.Tensor | Hyper] | None = None,
                 modules: Mapping[str, nn.Module] | None = None, horizon: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        self.optimizer, self.horizon = optimizer, horizon
        self.param_names, self.param_shapes = tuple(param_names), dict(param_shapes)
        self.dtype, self.device = dtype, device
        self.groups = list(groups) if groups is not None else None
        self._build_optim(optimizer)
        self.model = dict(model or {})
        self.loss_specs: dict[str, Hyper] = {}
        for name, v in dict(loss or {}).items():
            _check_dtype(f"loss.{name}", v.init if isinstance(v, Hyper) else v)
            h = v if isinstance(v, Hyper) else Hyper(init=v)
            if h.schedule or h.block or h.granularity != "scalar":
                raise ValueError(f"loss.{name}: schedules and granularities apply to optimizer "
                                 "hyperparameters; give a loss hyperparameter its shape through init")
            self.loss_specs[name] = h
        self.modules: dict[str, tuple[FunctionalModel, dict[str, str], nn.Module]] = {}
        for name, m in dict(modules or {}).items():
            m = uncompiled(m)        # torch.compile's wrapper: the module inside, with a warning
            fm = FunctionalModel(m)
            self.modules[name] = (fm, {n: f"loss.{name}.{n}" for n in fm.names}, m)
        self._check_schedules()
        # build λ once now, so a bad initial value (shape, dtype, sign) fails before any work; keep its structure
        self._reference = {k: (v.shape, v.dtype, v.device) for k, v in self.init().items()}
        optimizer.check_values(self._lohi)
        for key, (n, h, _) in self.leaves.items():
            if isinstance(h.bounds, tuple):
                lo, hi = _extremes(h.init)
                if lo < h.bounds[0] or hi > h.bounds[1]:
                    raise ValueError(f"{key}: the initial value {lo if lo < h.bounds[0] else hi} is outside "
                                     f"bounds={h.bounds}")

    def _build_optim(self, optimizer: Optimizer) -> None:
        """The optimizer's hyperparameters over the inner weights: ``self.leaves`` (λ key -> (name, Hyper,
        the weights it applies to)) for the learned ones, ``self.const_by_weight`` (name -> weight -> float) for the
        constants. A group's own value wins over the optimizer's, which wins over the default."""
        groups: list[tuple[str | None, Sequence[str], Mapping[str, Any]]] = \
            list(self.groups) if self.groups is not None else [(None, self.param_names, {})]
        self.leaves: dict[str, tuple[str, Hyper, tuple[str, ...]]] = {}
        self.const_by_weight: dict[str, dict[str, float]] = {n: {} for n in optimizer.hparam_names}
        shared: dict[str, list[str]] = {}
        for key, names, vals in groups:
            for name in optimizer.hparam_names:
                own = name in vals
                v = vals[name] if own else optimizer.values.get(name, optimizer.defaults[name])
                where = f"optim.{name}" + (f" of param group {key!r}" if own else "")
                init = v.init if isinstance(v, Hyper) else v
                for x in (init.values() if isinstance(init, Mapping) else [init]):
                    _check_dtype(where, x)
                if isinstance(v, torch.Tensor):
                    raise TypeError(f"{where}: wrap a learnable tensor as Hyper(init=...), or pass a float for a constant")
                if not isinstance(v, Hyper):
                    self.const_by_weight[name].update({p: float(v) for p in names})
                elif v.granularity in ("tensor", "element"):
                    self.leaves.update({f"optim.{name}[{p}]": (name, v, (p,)) for p in names})
                elif v.granularity == "group" or own:
                    if key is None:
                        raise ValueError(f"optim.{name}: granularity 'group' needs param groups "
                                         "(hg.optim.sgd([{'params': ...}, ...], ...))")
                    self.leaves[f"optim.{name}@{key}"] = (name, v, tuple(names))
                else:
                    shared.setdefault(name, []).extend(names)
        for name, names in shared.items():        # one leaf for every group that inherits a scalar Hyper
            self.leaves[f"optim.{name}"] = (name, optimizer.values[name], tuple(names))
        self.leaves = dict(sorted(self.leaves.items(), key=lambda kv: optimizer.hparam_names.index(kv[1][0])))
        self.specs: dict[str, Hyper] = {}            # name -> its Hyper (the first, where groups differ)
        for name, h, _ in self.leaves.values():
            self.specs.setdefault(name, h)
        # names constant on every weight with one value (what a single-group optimizer calls its constants)
        self.constants: dict[str, float] = {n: next(iter(c.values())) for n, c in self.const_by_weight.items()
                                            if len(c) == len(self.param_names) and len(set(c.values())) == 1}
        lohi: dict[str, list[float]] = {}
        for n, c in self.const_by_weight.items():
            lohi.setdefault(n, []).extend(c.values())
        for name, h, _ in self.leaves.values():
            if h.bounds == "torch":
                lohi.setdefault(name, []).extend(_extremes(h.init))
        self._lohi = {n: (min(v), max(v)) for n, v in lohi.items() if v}
        # per step (coefficients): the constants laid out per weight once, and where each leaf's value goes
        index = {p: i for i, p in enumerate(self.param_names)}
        self._base = {n: [c.get(p) for p in self.param_names] for n, c in self.const_by_weight.items()}
        self._slots = [(key, name, h, h.schedule is not None or h.block is not None, tuple(index[p] for p in ps))
                       for key, (name, h, ps) in self.leaves.items()]

    def constant_values(self) -> dict[str, tuple[float, ...]]:
        """name -> the distinct constant values it takes over the inner weights (for names that are
        constant on at least one weight)."""
        return {n: tuple(sorted(set(c.values()))) for n, c in self.const_by_weight.items() if c}

    def scheduled(self) -> bool:
        return any(h.schedule is not None or h.block is not None for _, h, _ in self.leaves.values())

    # ---- building λ -------------------------------------------------------------------------------
    def _blocks(self, h: Hyper) -> int | None:
        if h.schedule is not None:
            return h.schedule
        if h.block is not None:
            if self.horizon is None:
                raise ValueError("block schedules need the horizon T (InnerProblem(horizon=T))")
            return math.ceil(self.horizon / h.block)
        return None

    def _check_schedules(self) -> None:
        for key, (name, h, _) in self.leaves.items():
            if (h.schedule or h.block) and self.horizon is None:
                raise ValueError(f"{key} has a schedule; give the inner problem a horizon T")
            k = self._blocks(h)
            if k is not None and isinstance(h.init, torch.Tensor) and h.init.dim() >= 1 \
                    and h.granularity in ("scalar", "group") and h.init.shape[0] != k:
                extra = f" (block={h.block} over T={self.horizon} needs ceil(T/block) = {k})" if h.block else ""
                raise ValueError(f"{key}: the schedule has {h.init.shape[0]} values but {k} are "
                                 f"needed{extra}; some steps would have no value")

    def _raw(self, name: str, h: Hyper, init: object, shape: tuple[int, ...]) -> torch.Tensor:
        _check_dtype(name, init)
        k = self._blocks(h)
        full = shape if k is None else (k, *shape)
        x = torch.as_tensor(init, dtype=self.dtype, device=self.device)
        if x.shape != torch.Size(full):
            if k is not None and x.shape == torch.Size(shape):
                x = x.expand(full)
            elif x.dim() == 0:
                x = x.expand(full)
            else:
                raise ValueError(f"{name}: initial value has shape {tuple(x.shape)} but {tuple(full)} is "
                                 f"needed (granularity {h.granularity!r}" + (f", {k} schedule values" if k else "") + ")")
        if h.positive is not None and not bool((x > 0).all()):
            raise ValueError(f"{name}: positive={h.positive!r} needs an initial value > 0")
        return TRANSFORMS[h.positive][1](x.clone())

    def init(self) -> Hparams:
        """Fresh raw leaves of λ (``requires_grad=True``)."""
        lam: Hparams = {}
        covered: dict[int, tuple[str, Hyper, list[str]]] = {}     # a per-tensor Hyper -> the weights it covers
        for key, (name, h, ps) in self.leaves.items():
            if h.granularity in ("tensor", "element"):
                covered.setdefault(id(h), (name, h, []))[2].extend(ps)
        for name, h, weights in covered.values():
            if isinstance(h.init, Mapping):
                missing, extra = set(weights) - set(h.init), set(h.init) - set(weights)
                if missing or extra:
                    raise ValueError(f"optim.{name}: per-parameter initial values must name exactly the inner "
                                     f"weights it covers; missing {sorted(missing)}, unknown {sorted(extra)}")
        for key, (name, h, ps) in self.leaves.items():
            if h.granularity not in ("tensor", "element"):
                lam[key] = self._raw(key, h, h.init, ())
                continue
            p, = ps
            shape = () if h.granularity == "tensor" else tuple(self.param_shapes[p])
            init = h.init[p] if isinstance(h.init, Mapping) else h.init
            _check_dtype(key, init)
            lam[key] = self._raw(key, h, init, shape)
        for n, v in self.model.items():
            lam[f"model.{n}"] = v.detach().clone()
        for n, h in self.loss_specs.items():
            x = torch.as_tensor(h.init, dtype=self.dtype, device=self.device)
            lam[f"loss.{n}"] = self._raw(f"loss.{n}", Hyper(init=x, positive=h.positive), x, tuple(x.shape))
        for name, (fm, keys, m) in self.modules.items():
            for n, w in m.named_parameters():
                lam[keys[n]] = w.detach().clone().to(self.dtype)
        return {k: v.requires_grad_() for k, v in lam.items()}

    def window_lengths(self, key: str) -> torch.Tensor | None:
        """Number of inner steps that share each schedule value of ``key`` (None if unscheduled)."""
        h = self.leaves[key][1] if key in self.leaves else None
        k = self._blocks(h) if h else None
        if k is None:
            return None
        # h is a scheduled Hyper here (k is not None), and a schedule needs the horizon (_check_schedules)
        idx = torch.tensor([self.index(cast(Hyper, h), t) for t in range(1, cast(int, self.horizon) + 1)])
        return torch.bincount(idx, minlength=k)

    def validate(self, lam: HparamsLike) -> None:
        """Raise if ``lam`` does not have the structure that :meth:`init` builds (kept from construction)."""
        ref = self._reference
        missing, extra = set(ref) - set(lam), set(lam) - set(ref)
        if missing or extra:
            raise ValueError(f"hyperparameters do not match the problem: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}; build them with problem.init_hparams()")
        for k, v in lam.items():
            _check_dtype(k, v)
            shape, dtype, device = ref[k]
            if v.shape != shape:
                raise ValueError(f"{k} has shape {tuple(v.shape)}, expected {tuple(shape)}")
            if v.dtype != dtype or v.device != device:
                raise ValueError(f"{k} is {v.dtype} on {v.device} but the model's weights are {dtype} on "
                                 f"{device}: build λ with problem.init_hparams() after moving the model "
                                 "(model.to(dtype / device)), or move λ the same way")

    # ---- per step ---------------------------------------------------------------------------------
    def index(self, h: Hyper, t: int) -> int:
        # only for a scheduled h (schedule or block set), which needs the horizon (_check_schedules)
        if self.horizon is not None and not 1 <= t <= self.horizon:
            raise ValueError(f"step {t} is outside the horizon 1..{self.horizon} that the schedules were built for; "
                             "run at most T = horizon steps from s_0 (a state with t > 0 has fewer left)")
        if h.schedule is not None:
            return (h.schedule * (t - 1)) // cast(int, self.horizon)
        return (t - 1) // cast(int, h.block)

    def window(self, t: int) -> tuple[int, ...]:
        """Which schedule entry every scheduled optimizer hyperparameter uses at step t: steps with
        the same window get the same :meth:`coefficients` values (``()`` without schedules)."""
        return tuple(self.index(h, t) for _, h, _ in self.leaves.values() if h.schedule is not None or h.block is not None)

    def coefficients(self, lam: HparamsLike, t: int) -> dict[str, tuple[Coefficient, ...]]:
        """The optimizer's coefficients at step t: name -> its values, one entry per inner weight tensor
        (what ``Optimizer.update`` receives as ``coef``)."""
        out: dict[str, list[Any]] = {name: list(base) for name, base in self._base.items()}
        for key, name, h, sched, where in self._slots:
            r = lam[key]
            v = self._bounded(name, h, t)(r[self.index(h, t)] if sched else r)
            for i in where:                                # one value object for all weights it covers
                out[name][i] = v
        return {name: tuple(vals) for name, vals in out.items()}

    def _bounded(self, name: str, h: Hyper, t: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map raw value → the value step t uses: the positivity transform, then ``h.enforce``."""
        f = TRANSFORMS[h.positive][0]
        rng = _range(name, h)
        if h.enforce == "init" or rng is None:
            return f
        lo, hi, closed = rng
        if h.enforce == "clip":
            top = hi if closed else hi - 1e-7 * max(1.0, abs(hi))
            return lambda r: f(r).clamp(lo, top)

        def checked(r: torch.Tensor) -> torch.Tensor:
            v = f(r)
            over = v > hi if closed else v >= hi
            if bool(((v < lo) | over).any()):
                raise ValueError(f"optim.{name} left its bounds [{lo}, {hi}{']' if closed else ')'} at step {t} "
                                 f"(values {float(v.min()):.4g} .. {float(v.max()):.4g}): clip it (Hyper(..., "
                                 "enforce='clip')), reparametrize (positive='softplus'), or lower the outer lr")
            return v
        return checked

    def model_values(self, lam: HparamsLike) -> dict[str, torch.Tensor]:
        return {n: lam[f"model.{n}"] for n in self.model}

    def view(self, lam: HparamsLike) -> HyperView:
        vals = {n: TRANSFORMS[h.positive][0](lam[f"loss.{n}"]) for n, h in self.loss_specs.items()}
        return HyperView(vals, {k: (fm, keys) for k, (fm, keys, _) in self.modules.items()}, lam)

    def value(self, lam: HparamsLike, key: str) -> torch.Tensor:
        """The constrained value of one raw leaf, as the inner steps use it: its positivity transform, and
        for an optimizer hyperparameter with ``enforce="clip"`` the clamp into its bounds."""
        if key in self.leaves:
            name, h, _ = self.leaves[key]
            return (self._bounded(name, h, 0) if h.enforce == "clip" else TRANSFORMS[h.positive][0])(lam[key])
        if key.startswith("loss.") and key[5:] in self.loss_specs:
            return TRANSFORMS[self.loss_specs[key[5:]].positive][0](lam[key])
        return lam[key]


# 'hparams' names the λ dict only; the specification of λ is HyperSpec
__getattr__ = renamed_attributes(__name__, {"HyperParameters": ("HyperSpec", lambda: HyperSpec)})
