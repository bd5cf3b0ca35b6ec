"""Meta-learning episodes: tasks, meta-batches, a shared initialization, and meta-testing.

A :class:`TaskSampler` draws tasks (support = the inner training data, query = the validation data);
a :class:`MetaLearner` turns a task into an :class:`~hypergradient.InnerProblem` whose
hyperparameters λ have the same structure for every task (ANIL's body, Meta-SGD's learning rates,
warp layers, a loss-weighting network; see :mod:`hypergradient.learners`).

:func:`meta_train` follows HyperDistill's Algorithm 3 with a meta-batch: per meta-iteration, draw B
tasks, start each inner optimization from the shared initialization φ and

* with an online estimator, run them in lockstep for T steps with λ updated online from the mean
  hypergradient (:func:`~hypergradient.drivers.online.lockstep`);
* with an offline one, take B offline hypergradients, their mean and one outer step
  (:func:`~hypergradient.drivers.offline.offline_step`);

then update φ (Reptile, first-order or second-order MAML: :mod:`hypergradient.drivers.init_updates`).
A meta-batch may be spread over ``torch.distributed`` ranks (:mod:`hypergradient.drivers.distributed`).

:func:`meta_test` adapts from φ with λ fixed on many fresh tasks and reports the mean and a 95%
confidence interval, mean ± 1.96 · std/√n (normal approximation, sample std with n − 1).

Everything random is drawn from explicit generators: the tasks from ``torch.Generator(seed)``, the
estimators' own draws from the estimator state (``est.new_state()``, seeded by their ``seed`` option,
carried across meta-iterations and returned); with the same seeds a run is reproducible bit for bit
on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, cast

import torch
from tqdm.auto import tqdm

from ..core.problem import InnerProblem
from ..core.stacked import StackedProblem, stack_problems
from ..core.state import Cost, State
from ..core.tree import detached
from ..core.types import HparamsLike
from ..estimators import base as _base
from ..estimators.base import EstimatorState, Hypergradient
from .checkpoint import Checkpointer, capture, estimator_config, restore
from .distributed import MetaBatch, current
from .init_updates import MAML, MAML_NEEDS, FirstOrderMAML, InitUpdate, Reptile, init_update_of
from .offline import offline_step
from .online import NONFINITE, LinearDecay, check_outer, lockstep, new_history, warn_if_worse

__all__ = ["Task", "TaskSampler", "MetaLearner", "MetaTrainResult", "MetaTestResult", "MetaIteration",
           "InitUpdate", "Reptile", "FirstOrderMAML", "MAML", "init_update_of", "inner_optimizations", "meta_train",
           "meta_test",
           "confidence_interval"]

Z95 = 1.959963984540054
Weights = dict[str, torch.Tensor]   # φ: inner-weight name -> tensor


@dataclass
class Task:
    """One task: ``support`` trains the inner weights (a batch, a sequence of batches or ``t -> batch``),
    ``query`` is the validation batch the hypergradient and the meta-test score use."""

    support: object
    query: object
    info: dict = field(default_factory=dict)


class TaskSampler:
    """Draws tasks. Subclasses implement :meth:`sample` using only ``generator`` for randomness."""

    def sample(self, generator: torch.Generator) -> Task:
        raise NotImplementedError


class MetaLearner:
    """Turns a task into an inner problem. Subclasses implement :meth:`problem`; every problem must
    have the same λ keys and inner-weight names (they share λ and the initialization φ)."""

    def problem(self, task: Task) -> InnerProblem:
        raise NotImplementedError

    def init_hparams(self) -> dict:
        """Fresh λ (leaf tensors), shared by every task's problem."""
        raise NotImplementedError

    def init_weights(self) -> dict:
        """The initial φ: inner-weight name -> tensor."""
        raise NotImplementedError


@dataclass
class MetaTrainResult:
    hparams: HparamsLike           # λ, the caller's tensors (updated in place)
    init: Weights                  # φ after meta-training (name -> tensor)
    history: dict = field(default_factory=dict)  # per outer step as in run_online, plus "meta_val_loss" per iteration
    cost: Cost = field(default_factory=Cost)     # every primitive the meta-training problems spent
    est_state: EstimatorState | None = None      # the estimator's state after the run
    outer_steps: int = 0                         # outer steps taken on λ


@dataclass
class MetaIteration:
    """What ``meta_train``'s callback receives after each meta-iteration."""

    iteration: int                 # 0-based
    init: Weights                  # φ after this iteration's update
    hparams: HparamsLike           # λ (the caller's tensors)
    problems: list[InnerProblem]   # this iteration's task problems
    finals: list[State]            # their final inner states
    query_loss: float              # mean over tasks of L_query(w_T^b)
    outer_steps: int               # outer steps taken in this iteration
    cost: Cost                     # primitives this iteration's problems spent
    seconds: float                 # wall time of the inner optimizations (and outer steps)
    est_state: EstimatorState      # the estimator's state now


@dataclass
class MetaTestResult:
    mean: float
    ci95: float                    # half-width of the 95% confidence interval
    values: torch.Tensor           # the per-task scores

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.ci95:.2g}"


def confidence_interval(values: Sequence[float] | torch.Tensor, z: float = Z95) -> tuple[float, float]:
    """(mean, z · std/√n) with the sample standard deviation (n − 1); half-width 0 for one value."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("no values to summarize")
    half = 0.0 if v.numel() < 2 else z * v.std(unbiased=True).item() / math.sqrt(v.numel())
    return v.mean().item(), half


def inner_optimizations(problems: Sequence[InnerProblem], estimator: _base.Estimator, hparams: HparamsLike,
                        outer: torch.optim.Optimizer, starts: Sequence[State], T: int, est_state: EstimatorState, *,
                        decay: LinearDecay | None = None, nonfinite: str = "raise", history: dict | None = None,
                        divergence: str = "raise", meta: MetaBatch | None = None,
                        tasks: Sequence[int] | None = None) -> tuple[list[State], int, list[Hypergradient] | None]:
    """One meta-iteration's inner optimizations with their outer steps: online estimators in
    :func:`~hypergradient.drivers.online.lockstep` (λ updated at every active step), offline ones by
    :func:`~hypergradient.drivers.offline.offline_step` (one outer step). Returns (final states,
    outer steps taken, the offline hypergradients or None)."""
    if estimator.online:
        r = lockstep(problems, estimator, hparams, outer, starts, T, est_state, decay=decay, nonfinite=nonfinite,
                     history=history, divergence=divergence, meta=meta, tasks=tasks)
        return r.states, r.outer_steps, None
    hgs = offline_step(problems, estimator, hparams, outer, starts, T, est_state, divergence=divergence,
                       history=history, meta=meta, tasks=tasks)
    return [h.next_state(estimator.name) for h in hgs], 1, hgs


def meta_train(learner: MetaLearner, estimator: str | _base.Estimator, hparams: HparamsLike,
               outer: torch.optim.Optimizer, sampler: TaskSampler, *, iterations: int, meta_batch: int = 10,
               T: int | None = None, init: Mapping[str, torch.Tensor] | None = None,
               init_update: str | InitUpdate | None = "reptile", init_lr: float = 1.0, seed: int = 0,
               lr_decay: bool = False, nonfinite: str = "raise", est_state: EstimatorState | None = None,
               callback: Callable[[MetaIteration], Any] | None = None, progress: bool = True,
               checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
               divergence: str = "raise", gather: bool = False, vectorize: bool = False,
               distributed: bool | None = None, **estimator_options: Any) -> MetaTrainResult:
    """Meta-train λ (online or offline) and φ (Reptile / first-order MAML) over ``iterations`` meta-batches.

    Args:
        learner: builds each task's inner problem.
        estimator: a registry name (options as keyword arguments) or an :class:`Estimator`. Online
            ones update λ at every inner step from the mean over the B tasks; offline ones once per
            meta-iteration from the mean of B offline hypergradients.
        hparams: λ from ``learner.init_hparams()`` (updated in place).
        outer: a ``torch.optim`` optimizer over ``hparams.values()``.
        sampler: the meta-training task distribution.
        iterations: meta-iterations (meta-batches).
        meta_batch: B, tasks per meta-iteration.
        T: inner steps (default: the problems' horizon).
        init: the starting φ (default ``learner.init_weights()``).
        init_update: ``"reptile"``, ``"fomaml"``, ``"maml"`` (second order: offline ``rmd`` /
            ``truncated_rmd``), an :class:`InitUpdate` or ``None`` (φ fixed).
        init_lr: η, the step size of φ's update: φ ← φ − η·(mean over the meta-batch of the update's
            direction: φ − w_T for Reptile, dL_query/dw_T for first-order MAML, dL_query/dφ for MAML).
        seed: the tasks are drawn from ``torch.Generator().manual_seed(seed)``.
        nonfinite: what an online estimator does with a non-finite hypergradient (as
            :func:`~hypergradient.drivers.run_online`: ``"raise"`` | ``"skip"``).
        lr_decay: decay the outer learning rate linearly to 0 over iterations × T inner steps (online).
        divergence: ``"raise"`` | ``"record"`` | ``"skip"`` | ``"restart"`` for a task whose inner loop
            diverges although its loss stays finite (:func:`~hypergradient.drivers.online.lockstep`).
        est_state: the estimator's state to continue from (default ``est.new_state()``).
        callback: ``callback(MetaIteration)`` after every meta-iteration.
        progress: a tqdm bar over the meta-iterations with the query loss (``False``: none).
        checkpoint: a file to save the run to every ``checkpoint_every`` meta-iterations and on Ctrl-C,
            and to resume from when it exists (:mod:`hypergradient.drivers.checkpoint`; bit for bit).
        distributed: ``None`` (spread the meta-batch over the ranks when a process group exists or
            ``torchrun`` launched this process), ``False`` (this process alone, e.g. one job of several
            that torchrun's ranks share), ``True`` (require a process group).
        gather: distributed only — sum the tasks' values in task order after an all-gather
            (bit-identical to one process) instead of one all-reduce.
        vectorize: run the meta-batch's B tasks as one batched inner loop (weights with a leading task
            axis, the forward under ``torch.func.vmap``: :mod:`hypergradient.core.stacked`); exact for
            the estimators that are linear in the tasks (``Estimator.vectorizable``: rmd, truncated_rmd,
            online_rmd, one_step, first_order, drmad; the others refuse). The tasks' batches must have
            equal shapes; the per-task divergence policies ``"skip"`` / ``"restart"`` do not apply (the
            divergence rule sees the summed loss).

    Distributed (under ``torchrun``, or with a ``torch.distributed`` process group initialized;
    :mod:`hypergradient.drivers.distributed`): every rank draws the same meta-batch and runs tasks
    b ≡ rank (mod W); hypergradients (per outer step), the initialization update and the query losses
    are averaged over all B tasks by one collective each; λ and φ stay identical on every rank. The
    progress bar and the checkpoint file are rank 0's (a checkpoint resumes with any number of ranks:
    rank 0 reads it and sends it to the others); ``callback`` runs on every rank with its own tasks'
    problems; ``result.cost`` is summed over the ranks. Estimators that draw random numbers from
    their state (EvoGrad, ES, PES, HyperDistill) are refused when W > 1 (their draws would depend on
    how tasks are split).
    """
    update = init_update_of(init_update, init_lr)
    for name, v in (("iterations", iterations), ("meta_batch", meta_batch)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    check_outer(outer, hparams)
    if init_update == "maml" or isinstance(update, MAML):
        if isinstance(estimator, str) and estimator in ("rmd", "truncated_rmd"):
            estimator_options = {**estimator_options, "wrt_init": True}
        elif not getattr(estimator, "wrt_init", False):
            raise ValueError(MAML_NEEDS)
    est = _base.resolve(estimator, **estimator_options)
    est_state = est.new_state() if est_state is None else est_state
    mb = MetaBatch() if distributed is False else current("gather" if gather else "sum")
    if distributed and not mb.distributed:
        raise ValueError("distributed=True, but there is no process group of more than one rank: launch with torchrun "
                         "(torchrun --nproc_per_node=2 script.py) or call torch.distributed.init_process_group first")
    if vectorize:
        if not est.vectorizable:
            raise ValueError(f"vectorize=True: {est.name} cannot run on a vectorized meta-batch: "
                             f"{est.not_vectorizable}; use vectorize=False")
        if divergence in ("skip", "restart"):
            raise ValueError(f"vectorize=True sees the meta-batch's summed training loss, so divergence={divergence!r} "
                             "cannot act on one task; use divergence='raise' or 'record', or vectorize=False")
        if mb.distributed:
            raise ValueError("vectorize=True over several ranks is not supported yet: use one or the other")
    if mb.distributed:
        mb.tasks(meta_batch)      # B < W: a clear error on every rank
        if any(isinstance(v, torch.Generator) for v in vars(est_state).values()):
            raise ValueError(f"{est.name} draws random numbers from one generator across the meta-batch's tasks, so "
                             f"a run over {mb.world} ranks would differ from one process; run it in one process "
                             "(without torchrun), or use rmd, truncated_rmd, one_step, first_order, online_rmd, "
                             "fmd, ift or drmad")
        if update is not None and not hasattr(update, "meta"):
            raise ValueError(f"the initialization update {type(update).__name__} does not average over a "
                             "distributed meta-batch; use 'reptile', 'fomaml' or 'maml' (or give it meta and tasks "
                             "attributes and average with hypergradient.drivers.distributed.MetaBatch.mean_tensors)")
    phi = {k: v.detach().clone() for k, v in (learner.init_weights() if init is None else init).items()}
    gen = torch.Generator().manual_seed(seed)
    history = new_history()
    history["meta_val_loss"] = []
    run: dict[str, Any] = {"done": 0, "phi": phi, "history": history, "cost": Cost(), "steps": 0, "decay": None}
    ck = Checkpointer(checkpoint, checkpoint_every, {
        "driver": "meta_train", **estimator_config(est, hparams, outer), "learner": type(learner).__name__,
        "sampler": type(sampler).__name__, "iterations": iterations, "meta_batch": meta_batch, "T": T,
        "init_update": init_update, "init_lr": init_lr, "seed": seed, "lr_decay": lr_decay, "nonfinite": nonfinite,
        "divergence": divergence,
        "init": {k: list(v.shape) for k, v in phi.items()}})
    saved = _load_on_main(ck, mb)
    if saved is not None:
        restore(saved, hparams, outer, est_state)
        gen.set_state(saved["generator"])
        run.update(done=saved["done"], phi=saved["phi"], history=saved["history"], cost=Cost(**saved["cost"]),
                   steps=saved["steps"])
        if saved["decay"] is not None:
            run["decay"] = LinearDecay(outer, saved["decay"]["total"])
            run["decay"].base, run["decay"].k = saved["decay"]["base"], saved["decay"]["k"]

    def snapshot() -> dict[str, Any]:
        d = run["decay"]
        return capture(hparams, outer, est_state, done=run["done"], phi=run["phi"], history=run["history"],
                       cost=dataclasses.asdict(run["cost"]), steps=run["steps"], generator=gen.get_state(),
                       decay=None if d is None else {"total": d.total, "base": d.base, "k": d.k})
    last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
    bar = tqdm(total=iterations, initial=run["done"], desc=f"meta-iterations ({est.name})",
               disable=not progress or not mb.main, leave=False)
    mine = mb.tasks(meta_batch) if mb.distributed else list(range(meta_batch))

    def body() -> None:
        nonlocal last
        first = run["done"]
        for it in range(first, iterations):
            drawn = [sampler.sample(gen) for _ in range(meta_batch)]     # every rank draws all B (same generator)
            spread = mb if mb.distributed else None
            failed: BaseException | None = None
            try:                                  # this rank's local set-up: an error here must reach every rank
                problems = [learner.problem(drawn[b]) for b in mine]
                runs: list[InnerProblem] = [stack_problems(problems)] if vectorize else problems
                if it == first and est.online:       # once per run (offline calls validate themselves)
                    _base.validate(runs[0], est, hparams)
                Ti = problems[0].horizon_or(T)
                starts = [p.init_state(run["phi"]) for p in runs]
            except Exception as e:
                if spread is None:
                    raise
                failed = e
            if spread is not None:
                mb.check(failed)
            counted = runs + problems if vectorize else problems     # (the init update may use the task problems)
            before = [p.cost.copy() for p in counted]
            t0 = time.perf_counter()
            if lr_decay and run["decay"] is None and est.online:
                run["decay"] = LinearDecay(outer, iterations * Ti)
            lam_used = {k: v.detach().clone() for k, v in hparams.items()} if vectorize else {}   # the episode's λ
            seen = len(run["history"].get("divergence", []))
            finals, steps, hgs = inner_optimizations(runs, est, hparams, outer, starts, Ti, est_state,
                                                     decay=run["decay"], nonfinite=nonfinite, history=run["history"],
                                                     divergence=divergence, meta=spread, tasks=mine)
            if vectorize:                         # back to one state (and one MAML gradient) per task
                stacked = cast(StackedProblem, runs[0])
                finals = stacked.unstack_state(finals[0])
                if hgs is not None and "init_grad" in hgs[0].info:
                    with torch.no_grad():         # (MAML logs each task's L_query(w_T) at the episode's λ)
                        hgs = [dataclasses.replace(hgs[0], value={k: v / stacked.B for k, v in hgs[0].value.items()},
                                                   val_loss=p.val_loss_at(f, lam_used), info={
                            **hgs[0].info, "init_grad": {n: g[b] for n, g in hgs[0].info["init_grad"].items()}})
                            for b, (p, f) in enumerate(zip(problems, finals))]
            if spread is not None:      # every rank logs every rank's divergence events, in one process's order
                new = run["history"].get("divergence", [])[seen:]
                merged = sorted((e for part in mb.gather_objects(new) for e in part),
                                key=lambda e: (e.get("step", 0), e["problem"]))
                if merged:
                    run["history"]["divergence"] = run["history"].get("divergence", [])[:seen] + merged
            seconds = time.perf_counter() - t0
            lam = detached(hparams)
            vals = None
            if update is not None:
                if spread is not None:
                    update.meta, update.tasks = spread, mine     # type: ignore[attr-defined]
                run["phi"], vals = update(run["phi"], problems, finals, lam, hgs)
            if vals is None:
                with torch.no_grad():
                    vals = [float(p.val_loss_at(s, lam)) for p, s in zip(problems, finals)]
            spent = sum(((p.cost - b) * p.tasks for p, b in zip(counted, before)), Cost())   # a stacked step is B
            query = mb.mean_floats(list(zip(mine, vals))) if spread is not None else sum(vals) / len(vals)
            if spread is not None:
                names = [f.name for f in dataclasses.fields(Cost)]
                spent = Cost(**dict(zip(names, mb.sum_counts([getattr(spent, k) for k in names]))))
            run.update(done=it + 1, cost=run["cost"] + spent, steps=run["steps"] + steps)
            run["history"]["meta_val_loss"].append(query)
            last = snapshot() if ck.path else {}   # (a copy only when there is a file to save it to)
            if mb.main and ck.due(run["done"], iterations):
                ck.save(last)
            bar.update()
            bar.set_postfix(query_loss=f"{run['history']['meta_val_loss'][-1]:.4g}", refresh=False)
            if callback is not None:
                callback(MetaIteration(it, run["phi"], hparams, problems, finals, query, steps, spent,
                                       seconds, est_state))
    (ck.run if mb.main else _run_without_saving)(body, lambda: last)
    bar.close()
    if mb.main:
        warn_if_worse(run["history"]["meta_val_loss"], "query loss after the inner optimization")
    return MetaTrainResult(hparams, run["phi"], run["history"], run["cost"], est_state, run["steps"])


def _run_without_saving(body: Callable[[], None], snapshot: Callable[[], Any]) -> None:
    body()


def _load_on_main(ck: Checkpointer, mb: MetaBatch) -> dict[str, Any] | None:
    """The checkpoint, read on rank 0 and sent to every rank (a refusal reaches every rank too)."""
    if not mb.distributed:
        return ck.load()
    got: tuple[dict[str, Any] | None, str | None] = (None, None)
    if mb.main:
        try:
            got = (ck.load(), None)
        except Exception as e:      # noqa: BLE001 - re-raised on every rank below
            got = (None, f"{type(e).__name__}: {e}")
    saved, error = mb.broadcast(got)
    if error is not None:
        raise RuntimeError(f"rank 0 could not resume from the checkpoint: {error}")
    return saved


def meta_test(learner: MetaLearner, hparams: Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor],
              sampler: TaskSampler, *, tasks: int = 1000, T: int | None = None, seed: int = 1,
              metric: Callable | None = None) -> MetaTestResult:
    """Adapt from φ = ``init`` with λ fixed for T steps on ``tasks`` fresh tasks; the mean score and its
    95% confidence interval. ``metric(problem, state, lam) -> float`` defaults to the query loss."""
    if not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be a positive int, got {tasks!r}")
    lam = {k: v.detach() for k, v in hparams.items()}
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(tasks):
        p = learner.problem(sampler.sample(gen))
        s, _ = p.run(p.init_state(init), lam, p.horizon_or(T))
        with torch.no_grad():
            scores.append(float(p.val_loss_at(s, lam)) if metric is None else float(metric(p, s, lam)))
    values = torch.tensor(scores, dtype=torch.float64)
    mean, half = confidence_interval(values)
    return MetaTestResult(mean, half, values)
