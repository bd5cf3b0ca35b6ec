"""One interface for every hypergradient estimator: the result type, the estimator's explicit state,
the online protocol, the one validation, and the registry by name.

Offline, ``estimator(problem, hparams, T=..., state=...)`` runs T inner steps and returns a
:class:`Hypergradient`: dL_val/dλ in λ's structure, split into the direct term ∂L_val/∂λ (g^FO) and
the indirect term α_T Σ_t (Π_{s>t} A_s) B_t (g^SO) (ALGORITHMS.md §0), with the final inner state,
the validation loss, the cost spent and method-specific diagnostics in ``info``.

Online (:class:`OnlineEstimator`), a driver calls ``carry = est.online_init(problem, λ, s_0, est_state)``
once per inner optimization, then per inner step ``hg, carry = est.online_step(problem, λ, s_{t−1},
carry)``: the estimator takes the step s_{t−1} → s_t itself (``hg.state``) and returns the
hypergradient at t, or ``hg.active = False`` where it gives none (the driver then takes no outer step).

Memory that outlives one inner optimization (HyperDistill's θ and inner-optimization count, every
random generator) is an :class:`EstimatorState`: made by ``est.new_state()``, passed in, advanced in
place and handed back by the drivers (``result.estimator_state``), serializable with
``state_dict()`` / ``load_state_dict()``. Estimator instances hold configuration only.

Estimators never write ``.grad``; :meth:`Hypergradient.to_grad` does that when asked.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, TypeVar, runtime_checkable

import torch

from ..core.deprecation import warn
from ..core.problem import InnerProblem
from ..core.state import Cost, State
from ..core.tree import detached, flatten
from ..core.types import Hparams, HparamsLike
from ..core.warn import warn_user

__all__ = ["Hypergradient", "EstimatorState", "GeneratorState", "Carry", "OnlineEstimator", "Estimator", "validate", "check",
           "REGISTRY", "ALIASES", "register", "register_alias", "get", "resolve", "estimate"]

MOVED = ("val_loss", "state", "active")   # keys of the old free ``info`` dict that are fields now


class Info(dict):
    """``Hypergradient.info``: method-specific diagnostics. The keys that became fields
    (``val_loss``, ``state``, ``active``) are still served, with a DeprecationWarning."""

    def __init__(self, data: Mapping[str, Any], owner: "Hypergradient"):
        super().__init__(data)
        self._owner = weakref.ref(owner)      # no reference cycle: a Hypergradient is freed as soon as unused

    def __missing__(self, key: str) -> Any:
        owner = self._owner()
        if key in MOVED and owner is not None:
            warn(f"hg.info[{key!r}]", f"hg.{key}")
            return getattr(owner, key)
        raise KeyError(key)


@dataclass
class Hypergradient:
    """What every estimator returns, offline and online.

    ``value = direct + indirect`` keyed like λ (raw leaves); ``state`` is the inner state the
    hypergradient is taken at (s_T offline, s_t online); ``val_loss`` = L_val there; ``active`` is
    False at online steps that give no hypergradient (N.IFT before its window; the value is zeros
    and drivers take no outer step); ``cost`` counts the primitives spent; ``info`` holds
    method-specific diagnostics only."""

    value: Hparams      # dL_val/dλ, keyed like λ (raw leaves)
    direct: Hparams     # ∂L_val/∂λ at fixed weights (g^FO)
    indirect: Hparams   # the part through the inner loop (g^SO)
    cost: Cost = field(default_factory=Cost)
    info: dict = field(default_factory=dict)
    state: State | None = None
    val_loss: torch.Tensor | None = None
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.info, Info):
            self.info = Info(self.info, self)

    @classmethod
    def of(cls, direct: Hparams, indirect: Hparams, *, state: State | None = None,
           val_loss: torch.Tensor | None = None, active: bool = True, cost: Cost | None = None,
           info: dict | None = None) -> "Hypergradient":
        """value = direct + indirect (g = g^FO + g^SO), keyed like ``direct``."""
        return cls({k: direct[k] + indirect[k] for k in direct}, direct, indirect, cost or Cost(), info or {},
                   state, val_loss, active)

    def next_state(self, who: str = "the estimator") -> State:
        """``state``, or a clear error where an estimator returned none (drivers need it to go on)."""
        if self.state is None:
            raise TypeError(f"{who} returned a Hypergradient without its inner state: set state= (s_t after "
                            "the step online, s_T offline)")
        return self.state

    def flat(self) -> torch.Tensor:
        """All entries concatenated in λ's key order (for cosine similarities and norms)."""
        return flatten(self.value)

    def to_grad(self, hparams: HparamsLike, accumulate: bool = False) -> None:
        """Write the hypergradient into ``hparams[k].grad`` (for a ``torch.optim`` outer optimizer)."""
        missing = [k for k in self.value if k not in hparams]
        if missing:
            raise KeyError(f"to_grad: the hyperparameters {missing} are not in the dict given; pass the λ this "
                           "hypergradient was computed for (problem.init_hparams())")
        for k, v in self.value.items():
            p = hparams[k]
            if accumulate and p.grad is not None:
                p.grad = p.grad + v.detach()
            else:
                p.grad = v.detach().clone()


# ---- the estimator's explicit state ----------------------------------------------------------------
@dataclass
class EstimatorState:
    """Memory that outlives one inner optimization. Subclasses add dataclass fields (numbers, tensors,
    ``torch.Generator``); :meth:`state_dict` turns them into plain values (a generator into its state
    tensor) for ``torch.save`` and :meth:`load_state_dict` restores them in place."""

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.get_state() if isinstance(v, torch.Generator) else v
        return out

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        if set(d) != names:
            raise ValueError(f"{type(self).__name__} expects the keys {sorted(names)}, got {sorted(d)}")
        for k, v in d.items():
            cur = getattr(self, k)
            if isinstance(cur, torch.Generator):
                cur.set_state(v)
            else:
                setattr(self, k, v)

    def copy(self) -> "EstimatorState":
        """An independent copy (generators cloned): to branch a run without advancing this one."""
        new = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Generator):
                setattr(new, f.name, torch.Generator(v.device).set_state(v.get_state()))
        return new


@dataclass
class GeneratorState(EstimatorState):
    """The memory of an estimator whose only state across calls is its random generator (EvoGrad, ES,
    PES): each call draws new perturbations, and a run replays from its seed."""

    generator: torch.Generator = field(default_factory=torch.Generator)


@dataclass
class Carry:
    """An estimator's memory within one inner optimization; subclasses add typed fields.
    ``est_state`` is the cross-episode :class:`EstimatorState` it advances."""

    est_state: EstimatorState


CarryT = TypeVar("CarryT", bound=Carry)


@runtime_checkable
class OnlineEstimator(Protocol[CarryT]):
    """What the online drivers call (:mod:`hypergradient.drivers.online`)."""

    name: str
    online: bool

    def new_state(self) -> EstimatorState:
        ...

    def online_init(self, problem: InnerProblem, hparams: HparamsLike, state: State,
                    est_state: EstimatorState | None = None) -> CarryT:
        ...

    def online_step(self, problem: InnerProblem, hparams: HparamsLike, state: State,
                    carry: CarryT) -> tuple[Hypergradient, CarryT]:
        ...


# ---- validation: the one place --------------------------------------------------------------------
def validate(problem: InnerProblem, estimator: "Estimator", hparams: HparamsLike, *, probe: bool = True) -> Hparams:
    """Check λ against the problem before any work: the keys and shapes of ``problem.spec`` and the
    optimizer hyperparameters the estimator cannot differentiate (every offline call and every
    ``online_init``); with ``probe`` also, by the problem's pre-flight probe (two steps with a graph),
    a validation loss that is not a scalar or depends on nothing, and a warning for λ entries nothing
    depends on (offline calls, and once per run in the online drivers). Returns λ detached."""
    if problem.tasks > 1 and not estimator.vectorizable:
        raise ValueError(f"{estimator.name} cannot run on a vectorized meta-batch of {problem.tasks} tasks: "
                         f"{estimator.not_vectorizable}; run the meta-batch sequentially (vectorize=False) or use "
                         f"one of {sorted(n for n, c in REGISTRY.items() if c.vectorizable is True)}")
    problem.spec.validate(hparams)
    estimator.check_hparams(hparams)
    lam = detached(hparams)
    if not probe:
        return lam
    unused = problem.unused_hparams(lam)
    if unused:
        warn_user(f"{estimator.name}: nothing depends on the hyperparameters {unused}; their "
                  "hypergradient is zero (check Hypers(model=...) / your losses)")
    return lam


def check(value: Mapping[str, torch.Tensor], name: str) -> None:
    """NaN/inf hypergradients are an error that names the likely cause."""
    bad = [k for k, v in value.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(f"{name} produced non-finite hypergradients for {bad}: the inner loop is "
                                 "probably unstable (lower the learning rate or the horizon) or a "
                                 "hyperparameter left its valid range (use positive='softplus')")


class Estimator:
    """Base class. Subclasses set the class attributes and implement :meth:`estimate` (offline) and,
    when ``online``, :meth:`start` and :meth:`advance`; those receive λ validated and detached, and
    the cost they spend on the problem's primitives is measured around them.

    ``vectorizable``: on a vectorized meta-batch (:class:`~hypergradient.core.stacked.StackedProblem`,
    the tasks' losses summed) the estimator returns exactly the sum of the per-task hypergradients —
    true of the estimators linear in the adjoint; the others say why not in ``not_vectorizable``."""

    vectorizable = False
    not_vectorizable = "it is not known to be linear in the per-task contributions"

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False          # equals dL_val/dλ up to floating point
    online: ClassVar[bool] = False         # gives a hypergradient at every inner step
    memory: ClassVar[str] = ""             # how held memory grows: "O(T·activations)", "O(|w|)", ...
    optimizer_hparams: ClassVar[bool] = True   # can it differentiate optimizer hyperparameters (lr, momentum)?
    # why the optimizer's own hyperparameters do not enter (estimators with optimizer_hparams = False)
    no_optimizer_hparams: ClassVar[str] = "it does not differentiate through the optimizer's update"
    state_class: ClassVar[type[EstimatorState]] = EstimatorState   # what new_state() makes and own() accepts

    def new_state(self) -> EstimatorState:
        """A fresh cross-episode state (estimators without one return an empty :class:`EstimatorState`)."""
        return EstimatorState()

    def own(self, est_state: EstimatorState) -> Any:
        """``est_state`` checked to be this estimator's kind (:attr:`state_class`): a clear TypeError for
        another estimator's state."""
        if not isinstance(est_state, self.state_class):
            raise TypeError(f"{self.name} needs its own state (est.new_state()), got {type(est_state).__name__}")
        return est_state

    def check_hparams(self, keys: Mapping[str, Any] | list[str]) -> None:
        """ValueError, before any work, for optimizer hyperparameters that this estimator cannot
        differentiate (``optimizer_hparams = False``)."""
        learned = [k for k in keys if k.startswith("optim.")]
        if learned and not self.optimizer_hparams:
            raise ValueError(f"{self.name} cannot differentiate optimizer hyperparameters {learned}: "
                             f"{self.no_optimizer_hparams}; use rmd, fmd, one_step or hyperdistill, or make "
                             "them constants")

    # ---- offline --------------------------------------------------------------------------------------
    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        """Offline: run T inner steps from ``state``; the result's cost is filled in by the caller."""
        raise NotImplementedError

    def __call__(self, problem: InnerProblem, hparams: HparamsLike, *, T: int | None = None,
                 state: State | None = None, est_state: EstimatorState | None = None) -> Hypergradient:
        T = problem.horizon_or(T)
        lam = validate(problem, self, hparams)
        state = problem.init_state() if state is None else state
        est_state = self.new_state() if est_state is None else est_state
        before = problem.cost.copy()
        hg = self.estimate(problem, lam, T, state, est_state)
        hg.cost = problem.cost - before
        check(hg.value, self.name)
        return hg

    # ---- online (estimators with ``online = True``) ---------------------------------------------------
    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> Carry:
        """The carry at the start of an inner optimization from ``state``."""
        raise NotImplementedError(f"{self.name} is offline only")

    def advance(self, problem: InnerProblem, lam: Hparams, state: State, carry: Any) -> tuple[Hypergradient, Any]:
        """The step s_{t−1} = ``state`` → s_t and the hypergradient at t. The result's ``cost`` is
        what was spent outside this call and is charged here (HyperDistill's LinearEstimation)."""
        raise NotImplementedError(f"{self.name} is offline only")

    def online_init(self, problem: InnerProblem, hparams: HparamsLike, state: State,
                    est_state: EstimatorState | None = None) -> Any:
        if not self.online:
            raise NotImplementedError(f"{self.name} is offline only")
        lam = validate(problem, self, hparams, probe=False)
        return self.start(problem, lam, state, self.new_state() if est_state is None else est_state)

    def online_step(self, problem: InnerProblem, hparams: HparamsLike, state: State,
                    carry: Any) -> tuple[Hypergradient, Any]:
        """(the hypergradient at s_t with ``hg.state`` = s_t, the carry); its cost is this step's.
        Non-finite values are returned as they are: the driver owns the policy."""
        before = problem.cost.copy()
        hg, carry = self.advance(problem, detached(hparams), state, carry)
        hg.cost = hg.cost + (problem.cost - before)
        return hg, carry


REGISTRY: dict[str, type[Estimator]] = {}
ALIASES: dict[str, tuple[str, dict]] = {}   # name -> (registered name, fixed options); not in list / verify

E = TypeVar("E", bound=type[Estimator])


def register(cls: E) -> E:
    if cls.name in REGISTRY or cls.name in ALIASES:
        raise ValueError(f"estimator {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def register_alias(alias: str, name: str, **options: Any) -> None:
    """``get(alias, **more)`` is ``get(name, **options, **more)`` (e.g. ``ift_cg`` = ``ift`` with ``solver="cg"``)."""
    if alias in REGISTRY or alias in ALIASES or name not in REGISTRY:
        raise ValueError(f"cannot alias {alias!r} to {name!r}")
    ALIASES[alias] = (name, options)


def get(name: str, **options: Any) -> Estimator:
    """The estimator registered as ``name`` (or an alias of one), built with ``options``."""
    if name in ALIASES:
        target, fixed = ALIASES[name]
        clash = set(fixed) & set(options)
        if clash:
            raise TypeError(f"{name} fixes {sorted(clash)}; use {target!r} to choose them")
        return REGISTRY[target](**fixed, **options)
    try:
        cls = REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown estimator {name!r}; known: {sorted(REGISTRY)}") from None
    return cls(**options)


def resolve(estimator: "str | Estimator", **options: Any) -> Estimator:
    """An estimator instance: a registry name built with ``options``, or an :class:`Estimator` as it is."""
    if isinstance(estimator, str):
        return get(estimator, **options)
    if options:
        raise TypeError("estimator options can only be given with an estimator name")
    if not isinstance(estimator, Estimator):
        raise TypeError(f"estimator must be a registry name or an Estimator, got {type(estimator).__name__}")
    return estimator


def estimate(name: str, problem: InnerProblem, hparams: HparamsLike, *, T: int | None = None,
             state: State | None = None, est_state: EstimatorState | None = None, **options: Any) -> Hypergradient:
    """``estimate("rmd", problem, lam, T=50)``: one call for every registered estimator."""
    return get(name, **options)(problem, hparams, T=T, state=state, est_state=est_state)

