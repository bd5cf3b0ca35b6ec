"""Meta-learning episodes: tasks, meta-batches, a shared initialization, and meta-testing.

A :class:`TaskSampler` draws tasks (support = the inner training data, query = the validation data);
a :class:`MetaLearner` turns a task into an :class:`~hypergradient.InnerProblem` whose
hyperparameters λ have the same structure for every task (ANIL's body, Meta-SGD's learning rates,
warp layers, a loss-weighting network; see :mod:`hypergradient.learners`).

:func:`meta_train` follows HyperDistill's Algorithm 3 with a meta-batch: per meta-iteration, draw B
tasks, start each inner optimization from the shared initialization φ, run them in lockstep for T
steps with λ updated online from the mean hypergradient (:func:`~hypergradient.drivers.online.
lockstep`), then update φ from the final weights w_T^b:

* Reptile (Nichol et al. 2018): φ ← φ − η (φ − mean_b w_T^b)   (HyperDistill uses η = 1);
* first-order MAML: φ ← φ − η mean_b ∇_w L_query(w_T^b).

:func:`meta_test` adapts from φ with λ fixed on many fresh tasks and reports the mean and a 95%
confidence interval, mean ± 1.96 · std/√n (normal approximation, sample std with n − 1).

Everything random is drawn from explicit generators: the tasks from ``torch.Generator(seed)``, the
estimators' own draws from their ``seed`` option; with a fresh estimator and the same seeds a run is
reproducible bit for bit on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from ..core.problem import InnerProblem
from ..core.state import Cost
from .online import LinearDecay, check_outer, lockstep, new_history, online_estimator

__all__ = ["Task", "TaskSampler", "MetaLearner", "MetaTrainResult", "MetaTestResult", "meta_train", "meta_test",
           "confidence_interval"]

INIT_UPDATES = ("reptile", "fomaml", None)
Z95 = 1.959963984540054


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
    hparams: dict                  # λ, the caller's tensors (updated in place)
    init: dict                     # φ after meta-training (name -> tensor)
    history: dict = field(default_factory=dict)  # per outer step as in run_online, plus "meta_val_loss" per iteration
    cost: Cost = field(default_factory=Cost)


@dataclass
class MetaTestResult:
    mean: float
    ci95: float                    # half-width of the 95% confidence interval
    values: torch.Tensor           # the per-task scores

    def __str__(self):
        return f"{self.mean:.4g} ± {self.ci95:.2g}"


def confidence_interval(values, z: float = Z95) -> tuple[float, float]:
    """(mean, z · std/√n) with the sample standard deviation (n − 1); half-width 0 for one value."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("no values to summarize")
    half = 0.0 if v.numel() < 2 else z * v.std(unbiased=True).item() / math.sqrt(v.numel())
    return v.mean().item(), half


def meta_train(learner: MetaLearner, estimator, hparams: dict, outer: torch.optim.Optimizer,
               sampler: TaskSampler, *, iterations: int, meta_batch: int = 10, T: int | None = None,
               init: Mapping[str, torch.Tensor] | None = None, init_update: str | None = "reptile",
               init_lr: float = 1.0, seed: int = 0, lr_decay: bool = False, nonfinite: str = "raise",
               callback: Callable | None = None, **estimator_options) -> MetaTrainResult:
    """Meta-train λ online (and φ by Reptile / first-order MAML) over ``iterations`` meta-batches.

    Args:
        learner: builds each task's inner problem.
        estimator: an online estimator (name + options, or instance); its hypergradients of the B
            tasks are averaged at every inner step.
        hparams: λ from ``learner.init_hparams()``; ``outer`` a ``torch.optim`` optimizer over them.
        sampler: the meta-training task distribution; tasks drawn from ``torch.Generator(seed)``.
        T: inner steps (default: the problems' horizon).
        init: the starting φ (default ``learner.init_weights()``).
        init_update: ``"reptile"``, ``"fomaml"`` or ``None`` (φ fixed); ``init_lr`` is η.
        lr_decay: decay the outer learning rate linearly to 0 over iterations × T outer steps.
    """
    if init_update not in INIT_UPDATES:
        raise ValueError(f"init_update must be one of {INIT_UPDATES}, got {init_update!r}")
    for name, v in (("iterations", iterations), ("meta_batch", meta_batch)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    check_outer(outer, hparams)
    est = online_estimator(estimator, hparams, **estimator_options)
    phi = {k: v.detach().clone() for k, v in (learner.init_weights() if init is None else init).items()}
    gen = torch.Generator().manual_seed(seed)
    history, cost, decay = new_history(), Cost(), None
    history["meta_val_loss"] = []
    for it in range(iterations):
        problems = [learner.problem(sampler.sample(gen)) for _ in range(meta_batch)]
        if it == 0:
            problems[0].spec.validate(hparams)   # every task's problem shares the learner's hyperparameters
        Ti = problems[0].horizon_or(T)
        if lr_decay and decay is None:
            decay = LinearDecay(outer, iterations * Ti)
        starts = [p.init_state(phi) for p in problems]
        finals, c = lockstep(problems, est, hparams, outer, starts, Ti, decay=decay, nonfinite=nonfinite,
                             history=history)
        cost = cost + c
        lam = {k: v.detach() for k, v in hparams.items()}
        names = problems[0].names
        vals = []
        if init_update == "reptile":
            mean_w = [sum(s.params[i] for s in finals) / len(finals) for i in range(len(names))]
            phi = {n: phi[n] - init_lr * (phi[n] - w) for n, w in zip(names, mean_w)}
        elif init_update == "fomaml":
            grads = [problems[b].val_grad(finals[b], lam, wrt_lam=False) for b in range(len(problems))]
            vals = [float(g[0]) for g in grads]
            mean_g = [sum(g[1][i] for g in grads) / len(grads) for i in range(len(names))]
            phi = {n: phi[n] - init_lr * g for n, g in zip(names, mean_g)}
        if not vals:
            with torch.no_grad():
                vals = [float(p.val_loss_at(s, lam)) for p, s in zip(problems, finals)]
        history["meta_val_loss"].append(sum(vals) / len(vals))
        if callback is not None:
            callback(it, phi, hparams)
    return MetaTrainResult(hparams, phi, history, cost)


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
