"""Offline hyperparameter optimization: one hypergradient per inner optimization, then one outer step.

:func:`offline_step` is the meta-batch step every offline driver uses: B inner problems (tasks, or
one problem), B offline hypergradients from their start states, the mean, one outer step::

    g = (1/B) Σ_b estimator(problem_b, λ, T, s_0^b).value;   λ.grad = g;  outer.step()

:func:`run_offline` repeats it on one problem (the loop a user would write by hand):

    >>> lam = problem.init_hparams()
    >>> res = run_offline(problem, "rmd", lam, torch.optim.Adam(lam.values(), lr=0.05), steps=20,
    ...                   storage="recompute")
    >>> res.history["val_loss"][-1], res.cost

Each hypergradient keeps its final inner state (``hg.state``), which the meta-learning drivers use
for the initialization update (Reptile, first-order MAML; :mod:`hypergradient.drivers.meta`); a
second-order MAML update would read the same pass's gradient at the initial weights.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import torch
from tqdm.auto import tqdm

from ..core.problem import InnerProblem
from ..core.state import Cost, State
from ..core.types import HparamsLike
from ..estimators import base as _base
from ..estimators.base import EstimatorState, Hypergradient
from .checkpoint import Checkpointer, capture, estimator_config, restore
from .distributed import MetaBatch
from .online import DIVERGENCE, apply, check_outer, mean_value

__all__ = ["offline_step", "run_offline", "OfflineResult"]


@dataclass
class OfflineResult:
    """What :func:`run_offline` returns."""

    hparams: HparamsLike           # λ: the caller's leaf tensors, updated in place by the outer optimizer
    last: Hypergradient | None     # the last outer step's hypergradient (None: the checkpoint had finished the run)
    history: dict = field(default_factory=dict)  # per outer step k: "val_loss" (at s_T, λ before step k), "hypergrad_norm"
    cost: Cost = field(default_factory=Cost)     # primitives spent over all outer steps
    est_state: EstimatorState | None = None      # the estimator's state after the run


def offline_step(problems: Sequence[InnerProblem], estimator: _base.Estimator, hparams: HparamsLike,
                 outer: torch.optim.Optimizer, starts: Sequence[State], T: int | None,
                 est_state: EstimatorState, *, divergence: str = "raise",
                 history: dict | None = None, meta: MetaBatch | None = None,
                 tasks: Sequence[int] | None = None) -> list[Hypergradient]:
    """B offline hypergradients (one per problem, from its start state), their mean, one outer step.
    Returns the hypergradients (``hg.state`` is each final state). A non-finite hypergradient raises
    before λ moves. ``divergence`` as in :func:`~hypergradient.drivers.online.lockstep`: a diverged
    inner loop raises, is recorded, or (``"skip"``, ``"restart"``: the same offline) leaves its
    hypergradient out of the mean; no outer step when every one is left out. ``meta`` with ``tasks``:
    this rank's share of a distributed meta-batch (:func:`~hypergradient.drivers.online.lockstep`);
    the mean is over every rank's hypergradients, one collective."""
    if divergence not in DIVERGENCE:
        raise ValueError(f"divergence must be one of {DIVERGENCE}, got {divergence!r}")
    spread = meta is not None and meta.distributed
    ids = list(range(len(problems))) if tasks is None else list(tasks)
    hgs: list[Hypergradient] = []
    used: list[tuple[int, Hypergradient]] = []
    failed: BaseException | None = None
    try:
        for i, (p, s) in enumerate(zip(problems, starts)):
            with p.divergence_mode("raise" if divergence == "raise" else "record") as events:
                h = estimator(p, hparams, T=T, state=s, est_state=est_state)
            hgs.append(h)
            for e in events[:1]:
                if history is not None:
                    history.setdefault("divergence", []).append({"problem": ids[i], **e, "action": divergence})
            if not events or divergence == "record":
                used.append((ids[i], h))
    except Exception as e:              # distributed: every rank learns of it in the collective below
        if not spread:
            raise
        failed = e
    if spread:
        value, _ = cast(MetaBatch, meta).mean([(b, h.value) for b, h in used], hparams, failed)
        if value is not None:
            _base.check(value, estimator.name)
            apply(outer, hparams, value)
    elif used:
        by_id = dict(zip(ids, problems))
        apply(outer, hparams, mean_value([h for _, h in used], [by_id[b].tasks for b, _ in used]))
    return hgs


def run_offline(problem: InnerProblem, estimator: str | _base.Estimator, hparams: HparamsLike,
                outer: torch.optim.Optimizer, steps: int, *, T: int | None = None, state: State | None = None,
                est_state: EstimatorState | None = None, callback: Callable[[int, Hypergradient], Any] | None = None,
                progress: bool = True, checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
                divergence: str = "raise", **estimator_options: Any) -> OfflineResult:
    """``steps`` outer steps, each from a full inner optimization of T steps from ``state`` (default
    the problem's initial state): g = dL_val/dλ by ``estimator``, ``outer.step()``.

    Args:
        problem: the inner problem.
        estimator: a registry name (options as keyword arguments) or an :class:`Estimator`.
        hparams: λ, the leaf tensors from ``problem.init_hparams()``; updated in place.
        outer: a ``torch.optim.Optimizer`` over ``hparams.values()``.
        steps: outer steps.
        callback: ``callback(k, hg)`` after outer step k = 0..steps−1.
        progress: a tqdm bar over the outer steps with the validation loss (``False``: none).
        divergence: ``"raise"`` | ``"record"`` | ``"skip"`` for an inner loop that diverges although its
            loss stays finite (:func:`offline_step`; events in ``history["divergence"]``).
        checkpoint: a file to save the run to every ``checkpoint_every`` outer steps and on Ctrl-C, and
            to resume from when it exists (:mod:`hypergradient.drivers.checkpoint`; bit for bit).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps (outer steps) must be a positive int, got {steps!r}")
    est = _base.resolve(estimator, **estimator_options)
    check_outer(outer, hparams)
    est_state = est.new_state() if est_state is None else est_state
    start = problem.init_state() if state is None else state
    ck = Checkpointer(checkpoint, checkpoint_every, {
        "driver": "run_offline", **estimator_config(est, hparams, outer), "steps": steps, "T": T,
        "start_t": start.t, "divergence": divergence})
    run: dict[str, Any] = {"done": 0, "history": {"val_loss": [], "hypergrad_norm": []}, "cost": Cost(), "hg": None}
    saved = ck.load()
    if saved is not None:
        restore(saved, hparams, outer, est_state)
        run.update(done=saved["done"], history=saved["history"], cost=Cost(**saved["cost"]))

    def snapshot() -> dict[str, Any]:
        return capture(hparams, outer, est_state, done=run["done"], history=run["history"],
                       cost=dataclasses.asdict(run["cost"]))
    last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
    bar = tqdm(total=steps, initial=run["done"], desc=f"outer steps ({est.name})", disable=not progress, leave=False)

    def body() -> None:
        nonlocal last
        history = run["history"]
        for k in range(run["done"], steps):
            (hg,) = offline_step([problem], est, hparams, outer, [start], T, est_state, divergence=divergence,
                                 history=history)
            history["val_loss"].append(float(hg.val_loss) if hg.val_loss is not None else float("nan"))
            history["hypergrad_norm"].append(float(hg.flat().double().norm()))
            run.update(done=k + 1, cost=run["cost"] + hg.cost, hg=hg)
            last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
            if ck.due(k + 1, steps):
                ck.save(last)
            bar.update()
            bar.set_postfix(val_loss=f"{history['val_loss'][-1]:.4g}", refresh=False)
            if callback is not None:
                callback(k, hg)
    ck.run(body, lambda: last)
    bar.close()
    return OfflineResult(hparams, run["hg"], run["history"], run["cost"], est_state)
