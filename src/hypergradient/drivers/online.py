"""Online hyperparameter optimization: λ is updated after every inner step (HyperDistill paper,
Algorithm 3, lines 8–14), with any online estimator and any ``torch.optim`` outer optimizer.

For each inner optimization (episode) and each step t = 1..T::

    s_t, g_t = estimator.online_step(problem, λ, s_{t−1}, carry)     # the estimator takes the step
    λ.grad = g_t;  outer.step();  λ.grad = None

With several problems (a meta-batch of tasks) the inner optimizations run in lockstep and the outer
step uses the mean of their hypergradients. The outer learning rate can decay linearly to zero over
all outer steps (``lr_decay=True``): lr_k = lr_0 · (1 − k/K) before outer step k = 0..K−1.

Non-finite hypergradients raise (``nonfinite="raise"``, the default) or skip that outer step
(``"skip"``); outer optimizers that handle them element-wise (:class:`~hypergradient.drivers.sign.
SignDescent`, ``skips_nonfinite = True``) receive them as they are.

    >>> lam = problem.init_hparams()
    >>> res = run_online(problem, "hyperdistill", lam, torch.optim.Adam(lam.values(), lr=1e-3), episodes=10)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from ..core.problem import InnerProblem
from ..core.state import Cost, State
from ..estimators import base as _base

__all__ = ["run_online", "OnlineResult", "LinearDecay", "online_estimator", "lockstep"]

NONFINITE = ("raise", "skip")


@dataclass
class OnlineResult:
    """What :func:`run_online` returns."""

    hparams: dict                  # λ: the caller's leaf tensors, updated in place by the outer optimizer
    states: list                   # the final inner state of each problem (last episode)
    history: dict = field(default_factory=dict)  # per outer step: "val_loss", "hypergrad_norm", "lr", "skipped"
    cost: Cost = field(default_factory=Cost)     # primitives the estimator spent, summed over problems

    @property
    def state(self) -> State:
        return self.states[0]


class LinearDecay:
    """Sets every parameter group's ``lr`` to lr_0 · (1 − k/total) before outer step k."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int):
        if not isinstance(total, int) or total < 1:
            raise ValueError(f"the number of outer steps must be a positive int, got {total!r}")
        self.optimizer, self.total, self.k = optimizer, total, 0
        self.base = [g["lr"] for g in optimizer.param_groups]

    def __call__(self) -> None:
        frac = max(0.0, 1.0 - self.k / self.total)
        for g, lr in zip(self.optimizer.param_groups, self.base):
            g["lr"] = lr * frac
        self.k += 1


def online_estimator(estimator, hparams: Mapping[str, torch.Tensor], **options) -> _base.Estimator:
    """The estimator instance (a registry name is looked up with ``options``); raises a clear error
    when it is not online or cannot learn the hyperparameters asked for."""
    if isinstance(estimator, str):
        estimator = _base.get(estimator, **options)
    elif options:
        raise TypeError("estimator options can only be given with an estimator name")
    if not isinstance(estimator, _base.Estimator):
        raise TypeError(f"estimator must be a registry name or an Estimator, got {type(estimator).__name__}")
    if not estimator.online:
        online = sorted(k for k, c in _base.REGISTRY.items() if c.online)
        raise ValueError(f"{estimator.name} gives no hypergradient until the inner optimization ends, so it "
                         f"cannot drive online updates; online estimators: {online}")
    estimator.check_hparams(hparams)
    return estimator


def check_outer(outer, hparams):
    if not isinstance(outer, torch.optim.Optimizer):
        raise TypeError(f"outer must be a torch.optim.Optimizer over the hyperparameter tensors, got "
                        f"{type(outer).__name__}")
    ids = {id(p) for g in outer.param_groups for p in g["params"]}
    missing = [k for k, v in hparams.items() if id(v) not in ids]
    if missing:
        raise ValueError(f"the outer optimizer does not hold the hyperparameters {missing}; build it from "
                         "hparams.values() (the same tensors)")
    bad = [k for k, v in hparams.items() if not v.is_leaf]
    if bad:
        raise ValueError(f"hyperparameters {bad} are not leaf tensors; use problem.init_hparams()")


def lockstep(problems: Sequence[InnerProblem], estimator: _base.Estimator, hparams: dict,
             outer: torch.optim.Optimizer, states: Sequence[State], T: int, *, decay: LinearDecay | None = None,
             nonfinite: str = "raise", history: dict | None = None, callback: Callable | None = None):
    """One inner optimization of every problem in lockstep, λ updated after each step with the mean
    hypergradient. Returns (final states, cost)."""
    states = list(states)
    carries = [estimator.online_init(p, hparams, s) for p, s in zip(problems, states)]
    cost = Cost()
    passthrough = getattr(outer, "skips_nonfinite", False)
    for _ in range(T):
        values, losses = None, []
        for i, p in enumerate(problems):
            states[i], hg, carries[i] = estimator.online_step(p, hparams, states[i], carries[i])
            cost = cost + hg.cost
            values = {k: v.detach().clone() for k, v in hg.value.items()} if values is None else \
                {k: values[k] + hg.value[k].detach() for k in values}
            if "val_loss" in hg.info:
                losses.append(float(hg.info["val_loss"]))
        values = {k: v / len(problems) for k, v in values.items()}
        finite = all(bool(torch.isfinite(v).all()) for v in values.values())
        skip = False
        if not finite and not passthrough:
            if nonfinite == "raise":
                _base.check(values, estimator.name)
            skip = True
        if decay is not None:
            decay()
        if not skip:
            for k, v in values.items():
                hparams[k].grad = v.to(hparams[k].dtype)
            outer.step()
            for v in hparams.values():
                v.grad = None
        if history is not None:
            history["val_loss"].append(sum(losses) / len(losses) if losses else float("nan"))
            history["hypergrad_norm"].append(float(torch.sqrt(sum((v.double() ** 2).sum() for v in values.values()))))
            history["lr"].append(outer.param_groups[0]["lr"])
            history["skipped"].append(skip)
        if callback is not None:
            callback(states, values)
    return states, cost


def new_history() -> dict:
    return {"val_loss": [], "hypergrad_norm": [], "lr": [], "skipped": []}


def run_online(problem, estimator, hparams: dict, outer: torch.optim.Optimizer, *, T: int | None = None,
               state: State | Sequence[State] | None = None, episodes: int = 1, lr_decay: bool = False,
               nonfinite: str = "raise", callback: Callable | None = None, **estimator_options) -> OnlineResult:
    """Optimize λ online: ``episodes`` inner optimizations of T steps each from ``state`` (default
    the problem's initial state), λ updated after every inner step.

    Args:
        problem: an :class:`InnerProblem`, or a sequence of them run in lockstep (mean hypergradient).
        estimator: a registry name (options as keyword arguments) or an online :class:`Estimator`.
        hparams: λ, the leaf tensors from ``problem.init_hparams()``; updated in place.
        outer: a ``torch.optim.Optimizer`` over ``hparams.values()`` (or :class:`SignDescent`,
            :class:`SGDHD`, :class:`AdamHD`).
        T: inner steps per episode (default ``problem.horizon``).
        lr_decay: decay the outer learning rate linearly to 0 over all episodes × T outer steps.
        nonfinite: ``"raise"`` or ``"skip"`` for non-finite mean hypergradients.
        callback: ``callback(states, mean_hypergradient)`` after every outer step.
    """
    problems = [problem] if isinstance(problem, InnerProblem) else list(problem)
    if not problems or not all(isinstance(p, InnerProblem) for p in problems):
        raise TypeError("problem must be an InnerProblem or a non-empty sequence of them")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    T = problems[0].horizon_or(T)
    for p in problems:
        p.spec.validate(hparams)
    check_outer(outer, hparams)
    est = online_estimator(estimator, hparams, **estimator_options)
    if state is None:
        starts = [p.init_state() for p in problems]
    elif isinstance(state, State):
        starts = [state] * len(problems)
    else:
        starts = list(state)
    decay = LinearDecay(outer, episodes * T) if lr_decay else None
    history, cost, states = new_history(), Cost(), starts
    for _ in range(episodes):
        states, c = lockstep(problems, est, hparams, outer, starts, T, decay=decay, nonfinite=nonfinite,
                             history=history, callback=callback)
        cost = cost + c
    return OnlineResult(hparams, states, history, cost)
