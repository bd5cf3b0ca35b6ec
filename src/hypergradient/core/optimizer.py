"""The differentiable-optimizer protocol: a pure ``init`` / ``update`` pair with explicit state, and an
optimizer that carries its own hyperparameters, options, param groups and gradient transforms.

``init(params) -> state`` and ``update(grads, state, params, coef, t) -> (params, state)``.
``params``, ``grads`` and every field of ``state`` are tuples of tensors aligned with one another;
``coef`` maps each hyperparameter name to its step-t values, a tuple (one entry per parameter
tensor) of floats or tensors that broadcast against that parameter, so scalar, per-group, per-tensor,
element-wise and scheduled hyperparameters all reach the update the same way (see
:meth:`hypergradient.core.hyper.HyperSpec.coefficients`). ``t`` is the 1-based step index. Nothing is
mutated in place, so the update can be differentiated with respect to params, state and
hyperparameters. :meth:`Optimizer.apply` is the step Φ takes, ``update(transform(grads))``: the
gradient transforms (clipping, in order), the sign (``maximize``), then ``update``; forward mode's
closed form splits the two (:meth:`Optimizer.transform_jvp`).

An optimizer is built the way ``torch.optim`` builds one, less the tensors it cannot know yet::

    hg.optim.sgd(lr=Hyper(0.1, "tensor"), momentum=0.9, nesterov=True)
    hg.optim.adam([{"params": "body.*", "lr": 1e-3}, {"params": model.head.parameters()}], lr=Hyper(1e-2))

Keyword arguments are its hyperparameters (a float: a constant; a :class:`~hypergradient.core.hyper.Hyper`:
learned) and its options (``nesterov``, ``amsgrad``, ``maximize``, ``clip``, ...); torch's tuple
spellings (``betas=(0.9, 0.999)``) are accepted. The optimizers themselves live in
:mod:`hypergradient.optim`, which registers them here by name.
"""

from __future__ import annotations

import math

from typing import Any, Collection, Iterable, Mapping, NamedTuple, Sequence, Union

import torch

__all__ = ["Optimizer", "OPTIMIZERS", "register_optimizer", "get_optimizer", "IGNORED_OPTIONS",
           "GradientTransform"]

# one hyperparameter's value for one parameter tensor at step t: a number or a tensor broadcasting against it
Coefficient = Union[float, torch.Tensor]
# ``coef``: hyperparameter name -> its values, one per parameter tensor
Coefficients = Mapping[str, Sequence[Coefficient]]


# torch.optim's checks of its arguments (its constructors raise "Invalid ..."), by hyperparameter name:
# (low, high, high included)
TORCH_RANGES: dict[str, tuple[float, float, bool]] = {
    **{n: (0.0, math.inf, True) for n in ("lr", "momentum", "weight_decay", "eps", "alpha", "lr_decay", "lambd",
                                          "momentum_decay", "step_size_min", "step_size_max")},
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "rho": (0.0, 1.0, True),
    "etaminus": (0.0, 1.0, False), "etaplus": (1.0, math.inf, True)}

# torch.optim options that choose how torch runs a step, not what it computes: accepted and ignored (our
# execution strategy is chosen per step, and every step is differentiable), so code written for torch runs
IGNORED_OPTIONS = ("foreach", "fused", "capturable", "differentiable")


class GradientTransform:
    """A map of the whole gradient (all parameter tensors together) applied inside Φ before the
    optimizer's rule, as ``torch.nn.utils.clip_grad_*_`` is applied before ``optimizer.step()``
    (see :mod:`hypergradient.optim.clip`)."""

    def __call__(self, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class Optimizer:
    """Base class. Subclasses set ``name``, ``hparam_names`` (what may be learned), ``defaults``,
    optionally ``tuples`` (torch's tuple spellings) and implement :meth:`init` and :meth:`update`.

    Args:
        params: param groups, as ``torch.optim`` takes them: None (one group: every inner weight), an
            iterable of tensors or names (one group), or an iterable of dicts, each with ``"params"``
            (the module's tensors, parameter names or glob patterns), an optional ``"name"`` (the group's
            key in λ: ``optim.lr@name``; its index by default) and per-group hyperparameter values.
        **kwargs: hyperparameters (float or ``Hyper``), options, ``maximize`` and ``clip`` (a
            :class:`GradientTransform` or a sequence of them, applied in order).
    """

    name: str = ""
    hparam_names: tuple[str, ...] = ()
    defaults: dict[str, Any] = {}
    tuples: dict[str, tuple[str, ...]] = {}   # torch's tuple spellings: "betas" -> ("beta1", "beta2")
    torch_class: str = ""  # the torch.optim class it reproduces
    # True when ``update`` acts element by element (no norm or other reduction over a tensor), so that
    # it may run on all weights as one flat buffer (:mod:`hypergradient.core.flat`); a custom optimizer
    # keeps the per-tensor layout unless it says so
    elementwise: bool = False
    maximize: bool
    clip: tuple[GradientTransform, ...]

    def __init__(self, params: Iterable[Any] | None = None, /, **kwargs: Any):
        kwargs = self.untuple(kwargs, type(self).__name__)
        for k in IGNORED_OPTIONS:
            kwargs.pop(k, None)
        clip = kwargs.pop("clip", None)
        clips = () if clip is None else (clip,) if isinstance(clip, GradientTransform) else \
            tuple(clip) if isinstance(clip, (list, tuple)) else (clip,)
        if not all(isinstance(c, GradientTransform) for c in clips):
            raise TypeError(f"clip takes hg.optim.clip_by_norm(...) / clip_by_value(...) (or a list of them), "
                            f"got {clip!r}")
        self.clip = clips
        self.values: dict[str, Any] = {k: kwargs.pop(k) for k in list(kwargs) if k in self.hparam_names}
        unknown = set(kwargs) - set(self.options())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option or hyperparameter {sorted(unknown)}; hyperparameters "
                            f"are {list(self.hparam_names)}, options {self.options()}")
        self._options = {**self.static_defaults(), **kwargs}
        for k, v in self._options.items():
            setattr(self, k, v)
        self.groups = self._parse_groups(params)

    @classmethod
    def untuple(cls, kwargs: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """``kwargs`` with torch's tuple spellings (``betas=(b1, b2)``) split into their names."""
        out = dict(kwargs)
        for key, names in cls.tuples.items():
            if key in out:
                v = out.pop(key)
                if not isinstance(v, (tuple, list)) or len(v) != len(names):
                    raise TypeError(f"{owner}: {key} takes a tuple {names}, got {v!r}")
                for n, x in zip(names, v):
                    if n in out:
                        raise TypeError(f"{owner}: give {key}= or {n}=, not both")
                    out[n] = x
        return out

    def _parse_groups(self, params: Iterable[Any] | None) -> list[dict[str, Any]] | None:
        if params is None:
            return None
        if isinstance(params, (str, torch.Tensor)):
            params = [params]
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not all(isinstance(g, Mapping) for g in items):
            if any(isinstance(g, Mapping) for g in items):
                raise TypeError("params: give tensors / names, or param-group dicts, not both")
            items = [{"params": items}]
        groups = []
        for i, g in enumerate(items):
            g = self.untuple(g, f"{type(self).__name__} param group {i}")
            if "params" not in g:
                raise ValueError(f"param group {i} has no 'params'")
            ps = g["params"]
            ps = [ps] if isinstance(ps, (str, torch.Tensor)) else list(ps)
            extra = set(g) - {"params", "name"} - set(self.hparam_names) - set(IGNORED_OPTIONS)
            if extra:
                opts = sorted(extra & set(self.options()) | extra & {"maximize", "clip"})
                why = (f"options {opts} are per optimizer here: give them to {type(self).__name__}(...)" if opts
                       else f"{type(self).__name__} has hyperparameters {list(self.hparam_names)}")
                raise TypeError(f"param group {i} sets {sorted(extra)}: {why}")
            key = str(g.get("name", i))
            if not key or any(c in key for c in "[]@"):
                raise ValueError(f"param group name {key!r} must be non-empty, without '[', ']' or '@'")
            groups.append({"params": ps, "name": key, "values": {k: g[k] for k in self.hparam_names if k in g}})
        names = [g["name"] for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"param group names repeat: {names}")
        return groups

    @classmethod
    def static_defaults(cls) -> dict[str, Any]:
        """The options (constructor keywords that are not hyperparameters) and their defaults."""
        return {"maximize": False}

    def check_values(self, values: Mapping[str, tuple[float, float]]) -> None:
        """ValueError for values ``torch.optim`` rejects: ``values[name] = (min, max)`` of a constant or
        of a learned hyperparameter's initial value (:data:`TORCH_RANGES`)."""
        for name, (lo, hi) in values.items():
            if name not in TORCH_RANGES:
                continue
            a, b, closed = TORCH_RANGES[name]
            if lo < a or hi > b or (not closed and hi >= b):
                span = f"[{a}, {b}{']' if closed else ')'}"
                raise ValueError(f"{type(self).__name__}: {name} = {lo if lo < a else hi} is outside {span}, which "
                                 f"torch.optim.{self.torch_class or type(self).__name__} rejects; give a value in "
                                 f"range (a learned value that may leave it: Hyper(..., bounds=None))")

    @classmethod
    def options(cls) -> list[str]:
        return [*cls.static_defaults(), "clip"]

    def with_values(self, values: Mapping[str, Any]) -> Optimizer:
        """A copy that also carries ``values`` (hyperparameter name -> float | Hyper); TypeError when one
        is already set, ValueError for a name that is not a hyperparameter."""
        unknown = sorted(set(values) - set(self.hparam_names))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no hyperparameter {unknown}; it has {list(self.hparam_names)} "
                             "(options such as nesterov go to the optimizer's constructor)")
        clash = sorted(set(values) & set(self.values))
        if clash:
            raise TypeError(f"{clash} are set both on the optimizer and in Hypers(optimizer=...): give them to the "
                            "optimizer only")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.values = {**self.values, **values}
        return new

    def init(self, params: Sequence[torch.Tensor]) -> NamedTuple:
        raise NotImplementedError

    def update(self, grads: Sequence[torch.Tensor], state: Any, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], NamedTuple]:
        raise NotImplementedError

    def transform(self, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """g̃ = T(g): the step's gradient transforms, the ``clip`` transforms in order, then the sign
        (``maximize``: ascend, g ← −g, as torch.optim does first thing in its step). The identity (the
        same tensors) when there are none (:attr:`has_transforms`)."""
        g = tuple(grads)
        for c in self.clip:
            g = c(g)
        if self.maximize:
            g = tuple(-x for x in g)
        return g

    @property
    def has_transforms(self) -> bool:
        """Whether :meth:`transform` is other than the identity (a clip, or ``maximize``)."""
        return bool(self.clip) or bool(self.maximize)

    def transform_jvp(self, grads: Sequence[torch.Tensor], tangents: Sequence[torch.Tensor | None]
                      ) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor | None]]:
        """(T(g), J_T(g)·V): the transformed gradient and the exact tangent of the transform alone at
        g = ``grads`` along N columns V = ``tangents`` (per tensor (N, *g.shape); None: zero), detached.

        Forward mode's closed form needs J_T·H·Z (the step's gradient is T(∇L(w)), so its Jacobian is
        J_T(g)·H), never H·J_T·Z (what a double backward through the transformed gradient would give;
        ALGORITHMS.md §2, "Two traps"). J_T·V is taken by the double-vjp trick on T only: with
        y = T(g) and a dummy cotangent u, ∂(uᵀ J_T)/∂u along V is J_T V; one batched backward for the N
        columns, reverse mode only (what the generic forward path relies on too). Uncounted (T is cheap).
        """
        if not self.has_transforms:
            return tuple(grads), list(tangents)
        g = [x.detach().requires_grad_() for x in grads]
        with torch.enable_grad():
            y = self.transform(g)
            live = [i for i, x in enumerate(y) if x.requires_grad]
            u = [torch.zeros_like(y[i], requires_grad=True) for i in live]
            pulled = torch.autograd.grad([y[i] for i in live], g, u, create_graph=True, allow_unused=True) \
                if live else ()
            pairs = [(p, v) for p, v in zip(pulled, tangents) if p is not None and p.requires_grad and v is not None]
            out: list[torch.Tensor | None] = [None] * len(y)
            if pairs:
                jv = torch.autograd.grad([p for p, _ in pairs], u, [v for _, v in pairs], is_grads_batched=True,
                                         allow_unused=True)
                for i, j in zip(live, jv):
                    out[i] = None if j is None else j.detach()
        return tuple(x.detach() for x in y), out

    def apply(self, grads: Sequence[torch.Tensor], state: Any, params: Sequence[torch.Tensor],
              coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], NamedTuple]:
        """One optimizer step as Φ takes it: ``update(transform(grads), ...)`` (:meth:`transform`: the
        clips in order, then the sign of ``maximize``)."""
        return self.update(self.transform(grads), state, params, coef, t)

    # ---- forward mode's closed form (estimators/fmd.py) ---------------------------------------------
    # An optimizer with a closed-form tangent recursion names the hyperparameters it covers and
    # implements the two methods below; FMD asks, instead of testing for a class.
    tangent_hparams: tuple[str, ...] = ()

    def tangent_blocker(self, learned: Collection[str], constants: Mapping[str, Collection[float]]) -> str | None:
        """Why the closed-form tangent rule does not apply when the optimizer hyperparameters
        ``learned`` are learned and the others take the values ``constants`` (name -> the distinct
        values over the inner weights); None when it does."""
        return f"{type(self).__name__} offers no closed-form tangent rule"

    def tangent_update(self, tangents: tuple[Sequence[torch.Tensor] | None, Sequence[torch.Tensor] | None],
                       hz: Sequence[torch.Tensor | None], dcoef: Mapping[str, Sequence[torch.Tensor | None]],
                       coef: Coefficients, grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                       opt: Any, new_opt: Any, t: int, N: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(Z_t, aux_t) from the tangent Z_{t-1} = dw_{t-1}/dλ and its auxiliary recursion (``tangents``,
        (None, None) before the first step), the transformed products ``hz`` = J_T(g) H_t Z_{t-1} (H_t
        the training Hessian at w_{t-1}, J_T the Jacobian of :meth:`transform` at g = ∇L_train(w_{t-1});
        None entries: zero), the transformed gradient ``grads`` = T(g) (what :meth:`update` received),
        the step's coefficients ``coef`` and their derivatives ``dcoef`` (name -> per tensor (N, ...) or
        None) over the N columns of λ. The rule sees the gradient only through T(g) and its tangent, so
        clipping and ``maximize`` need no case of their own."""
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.values.items()]
        parts += [f"{k}={v!r}" for k, v in self._options.items() if v != self.static_defaults()[k]]
        if self.clip:
            parts.append(f"clip={list(self.clip)!r}")
        if self.groups:
            parts.insert(0, f"groups={[g['name'] for g in self.groups]}")
        return f"{type(self).__name__}({', '.join(parts)})"


OPTIMIZERS: dict[str, type[Optimizer]] = {}


def register_optimizer(cls: type[Optimizer]) -> type[Optimizer]:
    """Make ``cls`` known by ``cls.name`` to :func:`get_optimizer` (and ``InnerProblem(optimizer=name)``)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name to be registered")
    if OPTIMIZERS.get(cls.name, cls) is not cls:
        raise ValueError(f"optimizer {cls.name!r} registered twice")
    OPTIMIZERS[cls.name] = cls
    return cls


def get_optimizer(name_or_optimizer: str | Optimizer, *params: Any, **kwargs: Any) -> Optimizer:
    """An optimizer by registry name (``"sgd"``, ``"adam"``, ...) built with ``kwargs`` (hyperparameters
    and options), or an instance passed through."""
    if isinstance(name_or_optimizer, Optimizer):
        if kwargs or params:
            raise TypeError("options can only be given with an optimizer name")
        return name_or_optimizer
    try:
        cls = OPTIMIZERS[name_or_optimizer]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name_or_optimizer!r}; known: {sorted(OPTIMIZERS)}") from None
    return cls(*params, **kwargs)
