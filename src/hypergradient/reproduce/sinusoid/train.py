"""One meta-training run: the estimators (paper labels → registry options), the ANIL learner, one
meta-iteration's inner optimizations with their outer steps, the cosines to exact RMD at
checkpoints, and :func:`train_one` (meta-train, then meta-test on the fixed test tasks)."""

from __future__ import annotations

import inspect

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from .config import BASELINES, DRIVER_OPTIONS, ESTIMATOR_OPTIONS, METHODS, SinusoidConfig
from .tasks import _sampler, adapt_and_score, inner_stability, task_set

if TYPE_CHECKING:
    from ...core.problem import InnerProblem
    from ...core.state import State
    from ...core.types import Hparams, HparamsLike
    from ...estimators.base import Estimator, EstimatorState
    from ...learners import ANIL, ProblemLearner

__all__ = ["make_learner", "make_estimator", "applied_hypergradient", "train_one"]


# ---- estimators -------------------------------------------------------------------------------------
def make_estimator(method: str, cfg: SinusoidConfig, seed: int, options: dict | None = None) -> Estimator:
    """The estimator of ``method`` (a :data:`METHODS` label) with ``options`` in the paper's labels
    (γ; N, K), renamed to the estimator's options by :data:`ESTIMATOR_OPTIONS` (N.IFT(N, K) is
    ``ift(solver="neumann", maxiter=N, window=K)``)."""
    from ...estimators import REGISTRY, get
    name, fixed = METHODS[method]
    opts: dict[str, Any] = dict(fixed)
    if name == "hyperdistill":
        opts.update(period=cfg.hd_period)
    if "seed" in inspect.signature(REGISTRY[name].__init__).parameters:
        opts.update(seed=seed)                 # the run's seed draws its perturbations / subsamples
    rename = ESTIMATOR_OPTIONS.get(method, {})
    opts.update({rename.get(k, k): v for k, v in (options or {}).items() if k not in DRIVER_OPTIONS})
    return get(name, **opts)


def applied_hypergradient(est: Estimator, problem: InnerProblem, lam: HparamsLike, state: State, T: int,
                          est_state: EstimatorState | None = None) -> tuple[Hparams, Hparams, Hparams]:
    """(Σ_t g_t over active steps | the offline value, g_T, g_T's indirect part) with λ fixed."""
    from ...drivers.online import online_sum
    if not est.online:
        hg = est(problem, lam, T=T, state=state, est_state=est_state)
        return hg.value, hg.value, hg.indirect
    total, last = online_sum(problem, est, lam, state, T, est.new_state() if est_state is None else est_state)
    return total, last.value, last.indirect


def _measure_cosines(methods_opts: dict, learner: ProblemLearner, lam: HparamsLike, phi: Mapping[str, torch.Tensor],
                     probe: dict, cfg: SinusoidConfig, seed: int) -> dict:
    """{method: {"applied", "last", "last_so": mean cosine over probe tasks, "per_task": ...}}."""
    from ...diagnostics import cosine
    from ...estimators import get
    lam = {k: v.detach() for k, v in lam.items()}
    problems = [learner.problem(t) for t in probe["tasks"]]
    for p in problems:
        p.on_divergence = "record"           # a probe inner loop that blows up is measured as it is (faithful rows)
    rmd = get("rmd", storage="graph")
    exact = [rmd(p, lam, T=cfg.T, state=p.init_state(phi)) for p in problems]
    out = {}
    for method, opts in methods_opts.items():
        est = make_estimator(method, cfg, seed + 7, opts)
        est_state = est.new_state()          # one state across the probe tasks, as in one run
        rows = []
        for p, ref in zip(problems, exact):
            applied, last, last_so = applied_hypergradient(est, p, lam, p.init_state(phi), cfg.T, est_state)
            rows.append((cosine(applied, ref.value), cosine(last, ref.value), cosine(last_so, ref.indirect)))
        cols = list(zip(*rows))
        out[method] = {"applied": statistics.fmean(cols[0]), "last": statistics.fmean(cols[1]),
                       "last_so": statistics.fmean(cols[2]), "per_task": [list(r) for r in rows]}
    return out


# ---- one meta-training run --------------------------------------------------------------------------
def make_learner(cfg: SinusoidConfig, seed: int) -> ANIL:
    """ANIL on the 1-100-100-100-1 MLP (``torch.manual_seed(seed)`` initialization), inner SGD with momentum."""
    from ...learners import ANIL, anil_mlp
    torch.manual_seed(seed)
    model = anil_mlp(tuple(cfg.sizes)).to(cfg.torch_dtype)
    return ANIL(model, horizon=cfg.T, lr=cfg.inner_lr, momentum=cfg.inner_momentum)


def train_one(method: str, cfg: SinusoidConfig, seed: int, options: dict | None = None, *,
              shared_cosines: dict | None = None, evaluate_test: bool = True,
              tick: Callable[[], Any] | None = None) -> dict:
    """Meta-train one method with one seed, then meta-test. ``options`` are the method's tuned
    estimator options in the paper's labels (γ; N, K); ``shared_cosines`` {method: options} are
    measured at the cosine checkpoints in addition to the method itself. ``tick()`` is called after
    every meta-iteration."""
    from ...core.state import Cost, DivergenceError
    from ...drivers.meta import MetaIteration, confidence_interval, meta_train
    torch.set_num_threads(cfg.threads)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    options = dict(options or {})
    learner = make_learner(cfg, seed)
    lam = learner.init_hparams()
    phi = {k: v.detach().clone() for k, v in learner.init_weights().items()}
    outer = torch.optim.Adam(list(lam.values()), lr=0.0 if method in BASELINES else cfg.hyper_lr)
    est = make_estimator(method, cfg, seed, options)
    est_state = est.new_state()
    val, probe = task_set(cfg, "val"), task_set(cfg, "probe")
    cos_methods = {} if method in BASELINES else {method: options, **(shared_cosines or {})}
    rec: dict[str, Any] = {"method": method, "seed": seed, "options": options, "fingerprint": cfg.fingerprint(method),
           "meta_val_mse": [], "meta_train_loss": [], "cosines": [], "seconds_inner": [], "outer_steps": 0,
           "diverged": None, "theta": [], "stability": [], "test_diverged_tasks": None}
    cost = Cost()

    def checkpoint(it: int, phi: Mapping[str, torch.Tensor]) -> None:
        if it in cfg.cosine_points and cos_methods:
            opts = dict(cos_methods)
            theta = getattr(est_state, "theta", None)
            if METHODS[method][0] == "hyperdistill" and theta is not None:   # the θ the run is using now
                opts[method] = dict(options, theta=theta)
            c = _measure_cosines(opts, learner, lam, phi, probe, cfg, seed)
            rec["cosines"].append({"iteration": it, **c})

    def record(m: MetaIteration) -> None:
        nonlocal cost, phi
        phi = m.init
        rec["seconds_inner"].append(m.seconds / len(m.problems))
        rec["outer_steps"] += m.outer_steps
        cost = cost + m.cost
        rec["meta_train_loss"].append(m.query_loss)
        rec["meta_val_mse"].append(float(adapt_and_score(learner, lam, phi, val, cfg).mean()))
        rec["stability"].append(inner_stability(learner, lam, val, cfg))
        theta = getattr(m.est_state, "theta", None)
        if theta is not None:
            rec["theta"].append(float(theta))
        if tick is not None:
            tick()
        checkpoint(m.iteration + 1, phi)

    try:
        rec["meta_val_mse"].append(float(adapt_and_score(learner, lam, phi, val, cfg).mean()))
        rec["stability"].append(inner_stability(learner, lam, val, cfg))
        checkpoint(0, phi)
        meta_train(learner, est, lam, outer, _sampler(cfg, cfg.query), iterations=cfg.iterations,
                   meta_batch=cfg.meta_batch, T=cfg.T, init=phi, init_update="reptile", init_lr=cfg.reptile_lr,
                   seed=seed, est_state=est_state, callback=record, progress=False, divergence="record",
                   lr_decay=bool(options.get("lr_decay", False)),
                   distributed=False)   # under torchrun the ranks share the jobs (runner.py), not a meta-batch
    except (DivergenceError, FloatingPointError) as e:
        rec["diverged"] = f"meta-iteration {len(rec['meta_train_loss'])}: {e}"
        if tick is not None:
            for _ in range(cfg.iterations - len(rec["meta_train_loss"])):
                tick()
    n_inner = max(1, len(rec["meta_train_loss"]) * cfg.meta_batch)
    rec["cost_per_inner"] = {k: v / n_inner for k, v in dataclasses.asdict(cost).items()}
    rec["seconds_per_inner"] = statistics.fmean(rec["seconds_inner"]) if rec["seconds_inner"] else None
    if rec["diverged"] is None:
        rec["meta_val_final"] = rec["meta_val_mse"][-1]
        if evaluate_test:
            test = task_set(cfg, "test")
            mse = adapt_and_score(learner, lam, phi, test, cfg)
            m, h = confidence_interval(mse) if bool(torch.isfinite(mse).all()) else (float("inf"), float("nan"))
            rec["meta_test"] = {"mean": m, "ci95": h, "std": float(mse.std()), "median": float(mse.median()),
                                "tasks": len(mse), "tasks_above_100": int((mse > 100).sum())}
    else:
        rec["meta_val_final"] = float("inf")
        rec["meta_test"] = {"mean": float("inf"), "ci95": float("nan"), "std": float("nan"), "tasks": 0}
    rec["wall_seconds"] = time.perf_counter() - t_start
    rec["cpu_seconds"] = time.process_time() - cpu_start    # this process's CPU time (contention-free cost)
    return rec
