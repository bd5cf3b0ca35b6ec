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

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import torch
from tqdm.auto import tqdm

from ..core.problem import InnerProblem
from ..core.stacked import stack_problems
from ..core.divergence import Monitor
from ..core.state import Cost, DivergenceError, State
from ..core.types import Hparams, HparamsLike
from ..estimators import base as _base
from ..core.warn import warn_user
from ..estimators.base import EstimatorState, Hypergradient
from .distributed import MetaBatch
from .checkpoint import Checkpointer, capture, estimator_config, pack_states, restore, unpack_states

__all__ = ["run_online", "OnlineResult", "LinearDecay", "online_estimator", "lockstep", "Lockstep", "apply",
           "mean_value", "check_outer", "new_history", "online_sum"]

NONFINITE = ("raise", "skip")
VAL, HAS = "\0val_loss", "\0has_val_loss"   # the validation loss's slots in a distributed step's buffer (never λ keys)
DIVERGENCE = ("raise", "record", "skip", "restart")


@dataclass
class OnlineResult:
    """What :func:`run_online` returns."""

    hparams: HparamsLike           # λ: the caller's leaf tensors, updated in place by the outer optimizer
    states: list[State]            # the final inner state of each problem (last episode)
    history: dict = field(default_factory=dict)  # per inner step: val_loss, hypergrad_norm, lr, skipped, active
    cost: Cost = field(default_factory=Cost)     # primitives the estimator spent, summed over problems
    est_state: EstimatorState | None = None      # the estimator's state after the run (pass it on to resume)
    outer_steps: int = 0                         # outer steps taken

    @property
    def state(self) -> State:
        return self.states[0]


@dataclass
class Lockstep:
    """What one :func:`lockstep` inner optimization returns."""

    states: list[State]            # the final inner state of each problem
    cost: Cost                     # primitives spent, summed over problems
    outer_steps: int               # outer steps taken (inner steps where some estimator was active and finite)


class LinearDecay:
    """Sets every parameter group's ``lr`` to lr_0 · (1 − k/total) before outer step k."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int) -> None:
        if not isinstance(total, int) or total < 1:
            raise ValueError(f"the number of outer steps must be a positive int, got {total!r}")
        self.optimizer, self.total, self.k = optimizer, total, 0
        self.base = [g["lr"] for g in optimizer.param_groups]

    def __call__(self) -> None:
        frac = max(0.0, 1.0 - self.k / self.total)
        for g, lr in zip(self.optimizer.param_groups, self.base):
            g["lr"] = lr * frac
        self.k += 1


def online_estimator(estimator: str | _base.Estimator, **options: Any) -> _base.Estimator:
    """The estimator instance (a registry name is looked up with ``options``); a clear error when it
    is not online. (λ is validated by ``online_init``, for every problem.)"""
    est = _base.resolve(estimator, **options)
    if not est.online:
        online = sorted(k for k, c in _base.REGISTRY.items() if c.online)
        raise ValueError(f"{est.name} gives no hypergradient until the inner optimization ends, so it "
                         f"cannot drive online updates; online estimators: {online}")
    return est


def check_outer(outer: torch.optim.Optimizer, hparams: HparamsLike) -> None:
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


def mean_value(hgs: Sequence[Hypergradient], tasks: Sequence[int] | None = None) -> Hparams:
    """(1/B) Σ_b g_b over the hypergradients given, detached; ``tasks`` counts the tasks each one sums
    over (a vectorized meta-batch's is the sum over its B tasks), so B = Σ tasks (default: one each)."""
    total: Hparams | None = None
    for h in hgs:
        total = {k: v.detach().clone() for k, v in h.value.items()} if total is None else \
            {k: total[k] + h.value[k].detach() for k in total}
    if total is None:
        raise ValueError("no hypergradients to average")
    B = len(hgs) if tasks is None else sum(tasks)
    return {k: v / B for k, v in total.items()}


def apply(outer: torch.optim.Optimizer, hparams: HparamsLike, value: Hparams) -> None:
    """One outer step: λ.grad = ``value``; ``outer.step()``; λ.grad = None."""
    for k, v in value.items():
        hparams[k].grad = v.to(hparams[k].dtype)
    outer.step()
    for p in hparams.values():
        p.grad = None


def _norm(value: Hparams) -> float:
    return float(torch.sqrt(cast(torch.Tensor, sum((v.double() ** 2).sum() for v in value.values()))))


def lockstep(problems: Sequence[InnerProblem], estimator: _base.Estimator, hparams: HparamsLike,
             outer: torch.optim.Optimizer, states: Sequence[State], T: int, est_state: EstimatorState, *,
             decay: LinearDecay | None = None, nonfinite: str = "raise", history: dict | None = None,
             callback: Callable | None = None, divergence: str = "raise", meta: MetaBatch | None = None,
             tasks: Sequence[int] | None = None, vectorize: bool = False) -> Lockstep:
    """One inner optimization of every problem in lockstep, λ updated after each step with the mean
    hypergradient of the problems whose estimator is active there (``hg.active``; no outer step where
    none is). ``est_state`` is advanced in place. ``callback(states, mean or None)`` after every step.

    ``divergence``: what happens to a problem whose trajectory the problem's rule
    (:mod:`hypergradient.core.divergence`) calls diverged at a step — ``"raise"``:
    :class:`DivergenceError`; ``"record"``: nothing (its hypergradients are used); ``"skip"``: its
    hypergradient is left out of the mean at that step (and each later one of the episode);
    ``"restart"``: its inner optimization starts again from its start state (left out at that step).
    Every non-raising case appends one event per diverged trajectory to ``history["divergence"]``.

    ``meta`` (a distributed :class:`~hypergradient.drivers.distributed.MetaBatch`) with ``tasks`` (the
    meta-batch indices of ``problems``): this rank's share of the meta-batch; the mean over every rank's
    active hypergradients is one collective per inner step, and every decision follows it.

    ``vectorize``: run ``problems`` as one batched inner loop (:mod:`hypergradient.core.stacked`; the
    estimator must be ``vectorizable``); the returned states are split back per problem."""
    if divergence not in DIVERGENCE:
        raise ValueError(f"divergence must be one of {DIVERGENCE}, got {divergence!r}")
    if vectorize:           # the problems as one batched inner loop (core.stacked), the states split back at the end
        if divergence in ("skip", "restart") or (meta is not None and meta.distributed):
            raise ValueError("vectorize=True runs the tasks as one problem: the per-task divergence policies 'skip' / "
                             "'restart' and a distributed meta-batch do not apply (use vectorize=False)")
        stacked = stack_problems(problems)
        r = lockstep([stacked], estimator, hparams, outer, [stacked.stack_states(list(states))], T, est_state,
                     decay=decay, nonfinite=nonfinite, history=history, callback=callback, divergence=divergence)
        return Lockstep(stacked.unstack_state(r.states[0]), r.cost * stacked.B, r.outer_steps)
    starts, states = list(states), list(states)
    spread = meta is not None and meta.distributed
    carries: list[Any] = []
    try:                        # (distributed: an error in one rank's set-up reaches every rank)
        carries = [estimator.online_init(p, hparams, s, est_state) for p, s in zip(problems, states)]
    except Exception as e:
        if not spread:
            raise
        cast(MetaBatch, meta).check(e)
    if spread:
        cast(MetaBatch, meta).check(None)
    monitors = [None if p.divergence is None else Monitor(p.divergence) for p in problems]
    cost, steps = Cost(), 0
    passthrough = getattr(outer, "skips_nonfinite", False)
    ids = list(range(len(problems))) if tasks is None else list(tasks)
    for k in range(T):
        active: list[tuple[int, Hypergradient]] = []
        counts: list[int] = []          # tasks each active hypergradient sums over (vectorized meta-batches)
        failed: BaseException | None = None
        try:
            for i, p in enumerate(problems):
                hg, carries[i] = estimator.online_step(p, hparams, states[i], carries[i])
                states[i] = hg.next_state(estimator.name)
                cost = cost + hg.cost
                m = monitors[i]
                if m is not None and p.last_step_loss is not None and m.update(p.last_step_loss):
                    if divergence == "raise":
                        raise DivergenceError(f"problem {ids[i]}: {m.why(states[i].t)}")
                    if not m.reported and history is not None:
                        history.setdefault("divergence", []).append(
                            {"problem": ids[i], "step": k + 1, "t": states[i].t, "mean": m.mean, "first": m.first,
                             "action": divergence})
                    m.reported = True
                    if divergence == "restart":
                        states[i] = starts[i]
                        carries[i] = estimator.online_init(p, hparams, starts[i], est_state)
                        monitors[i] = Monitor(m.rule)
                    if divergence in ("skip", "restart"):
                        continue
                if hg.active:
                    active.append((ids[i], hg))
                    counts.append(p.tasks)
        except Exception as e:          # distributed: every rank learns of it in the next collective
            if not spread:
                raise
            failed = e
        val_mean = math.nan
        if spread:      # one collective per step: the hypergradients and (packed with them) the validation losses
            like = {**hparams, VAL: torch.zeros((), dtype=torch.float64), HAS: torch.zeros((), dtype=torch.float64)}
            both, _ = cast(MetaBatch, meta).mean(
                [(b, {**h.value, VAL: torch.tensor(0.0 if h.val_loss is None else float(h.val_loss), dtype=torch.float64),
                      HAS: torch.tensor(0.0 if h.val_loss is None else 1.0, dtype=torch.float64)}) for b, h in active],
                like, failed)
            value = None if both is None else {k: v for k, v in both.items() if k not in (VAL, HAS)}
            if both is not None and float(both[HAS]) > 0:
                val_mean = float(both[VAL]) / float(both[HAS])
        else:
            value = mean_value([h for _, h in active], counts) if active else None
        skip = value is None
        if value is not None and not passthrough and not all(bool(torch.isfinite(v).all()) for v in value.values()):
            if nonfinite == "raise":
                _base.check(value, estimator.name)
            skip = True
        if decay is not None:
            decay()
        if value is not None and not skip:
            apply(outer, hparams, value)
            steps += 1
        if history is not None:
            if spread:
                history["val_loss"].append(val_mean)
            else:
                pairs = [(float(h.val_loss), c) for (_, h), c in zip(active, counts) if h.val_loss is not None]
                history["val_loss"].append(sum(v for v, _ in pairs) / sum(c for _, c in pairs) if pairs else math.nan)
            history["hypergrad_norm"].append(_norm(value) if value is not None else math.nan)
            history["lr"].append(outer.param_groups[0]["lr"])
            history["skipped"].append(value is not None and skip)
            history["active"].append(value is not None)
        if callback is not None:
            callback(states, value)
    return Lockstep(states, cost, steps)


def online_sum(problem: InnerProblem, estimator: _base.Estimator, hparams: HparamsLike, state: State, T: int,
               est_state: EstimatorState) -> tuple[Hparams, Hypergradient]:
    """T online steps with λ fixed (no outer step): (Σ_t g_t over the active steps — what T online
    updates at fixed λ would apply — and the last active hypergradient)."""
    carry = estimator.online_init(problem, hparams, state, est_state)
    total: Hparams | None = None
    last = None
    for _ in range(T):
        hg, carry = estimator.online_step(problem, hparams, state, carry)
        state = hg.next_state(estimator.name)
        if hg.active:
            last = hg
            total = {k: v.detach().clone() for k, v in hg.value.items()} if total is None else \
                {k: total[k] + hg.value[k] for k in total}
    if total is None or last is None:
        raise ValueError(f"{estimator.name} was active at none of the {T} steps")
    return total, last


def warn_if_worse(values: Sequence[float], what: str) -> None:
    """Warn when a run ends worse than it started: the mean of the last tenth of ``values`` (at least
    one) above the mean of the first tenth (non-finite entries left out)."""
    finite = [v for v in values if math.isfinite(v)]
    n = max(1, len(finite) // 10)
    if len(finite) >= 2 and sum(finite[-n:]) / n > sum(finite[:n]) / n:
        warn_user(f"the run ended worse than it started: the mean {what} of the last tenth "
                  f"({sum(finite[-n:]) / n:.4g}) is above that of the first ({sum(finite[:n]) / n:.4g}); lower the "
                  "outer learning rate, or check the estimator against rmd (diagnostics.cosine)")


def new_history() -> dict:
    return {"val_loss": [], "hypergrad_norm": [], "lr": [], "skipped": [], "active": []}


def run_online(problem: InnerProblem | Sequence[InnerProblem], estimator: str | _base.Estimator,
               hparams: HparamsLike, outer: torch.optim.Optimizer, *, T: int | None = None,
               state: State | Sequence[State] | None = None, episodes: int = 1, lr_decay: bool = False,
               nonfinite: str = "raise", callback: Callable | None = None, est_state: EstimatorState | None = None,
               progress: bool = True, checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
               divergence: str = "raise", **estimator_options: Any) -> OnlineResult:
    """Optimize λ online: ``episodes`` inner optimizations of T steps each from ``state`` (default
    the problem's initial state), λ updated after every inner step.

    Args:
        problem: an :class:`InnerProblem`, or a sequence of them run in lockstep (mean hypergradient).
        estimator: a registry name (options as keyword arguments) or an online :class:`Estimator`.
        hparams: λ, the leaf tensors from ``problem.init_hparams()``; updated in place.
        outer: a ``torch.optim.Optimizer`` over ``hparams.values()`` (or :class:`SignDescent`,
            :class:`SGDHD`, :class:`AdamHD`).
        T: inner steps per episode (default ``problem.horizon``).
        lr_decay: decay the outer learning rate linearly to 0 over all episodes × T inner steps.
        nonfinite: ``"raise"`` or ``"skip"`` for non-finite mean hypergradients.
        divergence: ``"raise"`` | ``"record"`` | ``"skip"`` | ``"restart"`` for a problem whose inner loop
            diverges although its loss stays finite (:func:`lockstep`; events in ``history["divergence"]``).
        callback: ``callback(states, mean_hypergradient or None)`` after every inner step.
        est_state: the estimator's state to continue from (default ``est.new_state()``); the
            result's ``est_state`` is where it ended.
        progress: a tqdm bar over the inner steps with the mean validation loss (``False``: none).
        checkpoint: a file to save the run to every ``checkpoint_every`` episodes and on Ctrl-C, and to
            resume from when it exists (:mod:`hypergradient.drivers.checkpoint`; bit for bit).
    """
    problems = [problem] if isinstance(problem, InnerProblem) else list(problem)
    if not problems or not all(isinstance(p, InnerProblem) for p in problems):
        raise TypeError("problem must be an InnerProblem or a non-empty sequence of them")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    T = problems[0].horizon_or(T)
    check_outer(outer, hparams)
    est = online_estimator(estimator, **estimator_options)
    for p in problems:
        _base.validate(p, est, hparams)          # once per run, with the pre-flight probe
    est_state = est.new_state() if est_state is None else est_state
    if state is None:
        starts = [p.init_state() for p in problems]
    elif isinstance(state, State):
        starts = [state] * len(problems)
    else:
        starts = list(state)
    decay = LinearDecay(outer, episodes * T) if lr_decay else None
    ck = Checkpointer(checkpoint, checkpoint_every, {
        "driver": "run_online", **estimator_config(est, hparams, outer), "T": T, "episodes": episodes,
        "lr_decay": lr_decay, "nonfinite": nonfinite, "problems": len(problems), "divergence": divergence})
    run: dict[str, Any] = {"done": 0, "history": new_history(), "cost": Cost(), "steps": 0, "states": starts}
    saved = ck.load()
    if saved is not None:
        restore(saved, hparams, outer, est_state)
        run.update(done=saved["done"], history=saved["history"], cost=Cost(**saved["cost"]), steps=saved["steps"],
                   states=unpack_states(saved["states"], starts))
        if decay is not None:
            decay.k = saved["decay_k"]

    def snapshot() -> dict[str, Any]:
        return capture(hparams, outer, est_state, done=run["done"], history=run["history"],
                       cost=dataclasses.asdict(run["cost"]), steps=run["steps"], decay_k=decay.k if decay else 0,
                       states=pack_states(run["states"]))
    last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
    bar = tqdm(total=episodes * T, initial=run["done"] * T, desc=f"inner steps ({est.name}, online)",
               disable=not progress, leave=False)

    def body() -> None:
        nonlocal last
        for _ in range(run["done"], episodes):
            r = lockstep(problems, est, hparams, outer, starts, T, est_state, decay=decay, nonfinite=nonfinite,
                         history=run["history"], callback=callback, divergence=divergence)
            run.update(done=run["done"] + 1, states=r.states, cost=run["cost"] + r.cost,
                       steps=run["steps"] + r.outer_steps)
            last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
            if ck.due(run["done"], episodes):
                ck.save(last)
            bar.update(T)
            bar.set_postfix(val_loss=f"{run['history']['val_loss'][-1]:.4g}", refresh=False)
    ck.run(body, lambda: last)
    bar.close()
    warn_if_worse(run["history"]["val_loss"], "validation loss")
    return OnlineResult(hparams, run["states"], run["history"], run["cost"], est_state, run["steps"])
