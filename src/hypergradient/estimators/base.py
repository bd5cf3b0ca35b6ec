"""One interface for every hypergradient estimator, one result type, and the registry by name.

An estimator is called as ``estimator(problem, hparams, T=..., state=...)`` and returns a
:class:`Hypergradient`: the hypergradient dL_val/dλ in λ's structure, split into the direct term
∂L_val/∂λ (g^FO) and the indirect term α_T Σ_t (Π_{s>t} A_s) B_t (g^SO) (ALGORITHMS.md §0), with the
cost it spent and an info dict. Estimators never write ``.grad``; :meth:`Hypergradient.to_grad`
does that when asked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..core.problem import InnerProblem
from ..core.state import Cost, State
from ..core.tree import detached, flatten

__all__ = ["Hypergradient", "Estimator", "REGISTRY", "ALIASES", "register", "register_alias", "get", "estimate", "check"]


@dataclass
class Hypergradient:
    value: dict      # dL_val/dλ, keyed like λ (raw leaves)
    direct: dict     # ∂L_val/∂λ at fixed weights (g^FO)
    indirect: dict   # the part through the inner loop (g^SO)
    cost: Cost       # primitives spent
    info: dict = field(default_factory=dict)  # method-specific diagnostics (val loss, final state, ...)

    @classmethod
    def of(cls, direct: dict, indirect: dict, cost: Cost, info: dict) -> "Hypergradient":
        """value = direct + indirect (g = g^FO + g^SO), keyed like ``direct``."""
        return cls({k: direct[k] + indirect[k] for k in direct}, direct, indirect, cost, info)

    def flat(self) -> torch.Tensor:
        """All entries concatenated in λ's key order (for cosine similarities and norms)."""
        return flatten(self.value)

    def to_grad(self, hparams: Mapping[str, torch.Tensor], accumulate: bool = False) -> None:
        """Write the hypergradient into ``hparams[k].grad`` (for a ``torch.optim`` outer optimizer)."""
        for k, v in self.value.items():
            p = hparams[k]
            if accumulate and p.grad is not None:
                p.grad = p.grad + v.detach()
            else:
                p.grad = v.detach().clone()


class Estimator:
    """Base class. Subclasses set the class attributes and implement :meth:`estimate`."""

    name: str = ""
    exact: bool = False          # equals dL_val/dλ up to floating point
    online: bool = False         # gives a hypergradient at every inner step (see `online_step`)
    memory: str = ""             # how held memory grows: "O(T·activations)", "O(|w|)", ...
    optimizer_hparams: bool = True   # can it differentiate optimizer hyperparameters (lr, momentum)?

    def estimate(self, problem: InnerProblem, lam: dict, T: int, state: State) -> tuple[dict, dict, dict]:
        """Offline: run T inner steps from ``state`` and return (direct, indirect, info)."""
        raise NotImplementedError

    # ---- online use (estimators with ``online = True``) ---------------------------------------------
    # The online driver calls ``carry = est.online_init(problem, lam, state)`` once per inner
    # optimization, then per inner step ``state, hg, carry = est.online_step(problem, lam, state, carry)``:
    # the estimator takes the inner step s_{t-1} -> s_t itself (it may need quantities from that step)
    # and returns the hypergradient at t (a Hypergradient whose cost is that step's cost); the driver then
    # updates λ. ``carry`` is the estimator's own memory (FMD's tangent, HyperDistill's w*, ...).
    def online_init(self, problem: InnerProblem, lam: dict, state: State):
        raise NotImplementedError(f"{self.name} is offline only")

    def online_step(self, problem: InnerProblem, lam: dict, state: State, carry):
        raise NotImplementedError(f"{self.name} is offline only")

    # why the optimizer's own hyperparameters do not enter (estimators with optimizer_hparams = False)
    no_optimizer_hparams = "it does not differentiate through the optimizer's update"

    def check_hparams(self, keys) -> None:
        """ValueError, before any work, for optimizer hyperparameters that this estimator cannot
        differentiate (``optimizer_hparams = False``)."""
        learned = [k for k in keys if k.startswith("optim.")]
        if learned and not self.optimizer_hparams:
            raise ValueError(f"{self.name} cannot differentiate optimizer hyperparameters {learned}: "
                             f"{self.no_optimizer_hparams}; use rmd, fmd, one_step or hyperdistill, or make "
                             "them constants")

    def __call__(self, problem: InnerProblem, hparams: Mapping[str, torch.Tensor], *, T: int | None = None,
                 state: State | None = None) -> Hypergradient:
        T = problem.horizon_or(T)
        problem.spec.validate(hparams)
        self.check_hparams(hparams)
        lam = detached(hparams)
        unused = problem.unused_hparams(lam)
        if unused:
            warnings.warn(f"{self.name}: nothing depends on the hyperparameters {unused}; their "
                          "hypergradient is zero (check model_hparams / your losses)", stacklevel=2)
        state = problem.init_state() if state is None else state
        before = problem.cost.copy()
        direct, indirect, info = self.estimate(problem, lam, T, state)
        hg = Hypergradient.of(direct, indirect, problem.cost - before, info)
        check(hg.value, self.name)
        return hg


def check(value: Mapping[str, torch.Tensor], name: str) -> None:
    """NaN/inf hypergradients are an error that names the likely cause."""
    bad = [k for k, v in value.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(f"{name} produced non-finite hypergradients for {bad}: the inner loop is "
                                 "probably unstable (lower the learning rate or the horizon) or a "
                                 "hyperparameter left its valid range (use positive='softplus')")


REGISTRY: dict[str, type[Estimator]] = {}
ALIASES: dict[str, tuple[str, dict]] = {}   # name -> (registered name, fixed options); not in list / verify


def register(cls: type[Estimator]) -> type[Estimator]:
    if cls.name in REGISTRY or cls.name in ALIASES:
        raise ValueError(f"estimator {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def register_alias(alias: str, name: str, **options) -> None:
    """``get(alias, **more)`` is ``get(name, **options, **more)`` (e.g. ``ift_cg`` = ``ift`` with ``solver="cg"``)."""
    if alias in REGISTRY or alias in ALIASES or name not in REGISTRY:
        raise ValueError(f"cannot alias {alias!r} to {name!r}")
    ALIASES[alias] = (name, options)


def get(name: str, **options) -> Estimator:
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


def estimate(name: str, problem: InnerProblem, hparams, *, T: int | None = None, state: State | None = None,
             **options) -> Hypergradient:
    """``estimate("rmd", problem, lam, T=50)``: one call for every registered estimator."""
    return get(name, **options)(problem, hparams, T=T, state=state)
