"""One Table 1 row on one (dataset, seed): :func:`run_method` returns its record (accuracies of the
chosen λ retrained from s_0, the learned schedules, the budget spent, the outer history).

* ours: :func:`~hypergradient.drivers.run_offline` with forward mode (``fmd``, the SGD closed form,
  Hessian products clamped to ±``hvp_clip``) and :class:`~hypergradient.drivers.SignDescent` (γ per
  hyperparameter type), ``outer_steps`` outer steps from λ = 0; the answer is the last λ
  (Algorithm 1). Sign descent ignores the scale of g, so the paper's mean over a shared window (sum /
  window length) and the exact sum give the same steps.
* non-greedy, unshared: the same with one learning rate per step, by exact reverse mode (``rmd``).
* greedy HD: :func:`~hypergradient.baselines.greedy_hd`; the answer is the run's own final model.
* random search, TPE: :mod:`hypergradient.baselines` in the box sign descent can reach, until ours'
  step-equivalents *and* ours' seconds are spent; answered at each budget (best validation loss).
* hand-tuned: :func:`~hypergradient.baselines.grid_search` over cosine schedules; best validation loss.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from ...baselines import SearchResult, cosine, greedy_hd, grid_search, random_search, tpe_search
from ...core.problem import InnerProblem
from ...core.types import Hparams
from ...drivers.offline import run_offline
from ...drivers.sign import SignDescent
from .config import METHODS, SchedulesConfig
from .problem import BOX, Splits, accuracy, build, constant_accuracy, score

__all__ = ["run_method", "per_step", "sign_descent"]


def per_step(problem: InnerProblem, lam: Hparams, T: int) -> dict[str, list[float]]:
    """The value of lr, momentum and weight decay that each step t = 1..T uses (the learned schedule)."""
    out: dict[str, list[float]] = {"lr": [], "momentum": [], "weight_decay": []}
    with torch.no_grad():
        for t in range(1, T + 1):
            coef = problem.spec.coefficients(lam, t)
            for name in out:
                out[name].append(float(coef[name][0]))
    return out


def sign_descent(cfg: SchedulesConfig, lam: Hparams) -> SignDescent:
    """The paper's outer optimizer: one absolute step γ per hyperparameter type."""
    gam = {"optim.lr": cfg.gamma_lr, "optim.momentum": cfg.gamma_momentum, "optim.weight_decay": cfg.gamma_wd}
    return SignDescent([{"params": [lam[k]], "lr": g} for k, g in gam.items()])


def _values(lam: Hparams) -> dict[str, list[float]]:
    return {k: v.detach().reshape(-1).tolist() for k, v in lam.items()}


def _non_greedy(cfg: SchedulesConfig, data: Splits, seed: int, *, lr_values: int, estimator: str,
                **options: Any) -> dict[str, Any]:
    problem = build(cfg, data, seed, lr_values)
    lam = problem.init_hparams()
    outer = sign_descent(cfg, lam)
    trace: list[dict[str, list[float]]] = []
    t0 = time.perf_counter()
    history: dict[str, Any] = {}
    stopped = None
    try:
        res = run_offline(problem, estimator, lam, outer, cfg.outer_steps, progress=False, divergence="record",
                          callback=lambda k, hg: trace.append(_values(lam)), **options)
        history = res.history
    except FloatingPointError as e:        # a non-finite hypergradient (λ did not move on it): stop there
        stopped = {"outer_step": len(trace), "error": str(e)[:200]}
    seconds, spent = time.perf_counter() - t0, problem.cost.step_equivalents
    return {**score(problem, lam, data), "hparams": _values(lam), "schedule": per_step(problem, lam, cfg.T),
            "step_equivalents": spent, "seconds": seconds, "outer_steps": len(trace),
            "val_loss_history": history.get("val_loss", []), "hparams_history": trace,
            "divergence": history.get("divergence", []), "stopped": stopped}


def _greedy(cfg: SchedulesConfig, data: Splits, seed: int) -> dict[str, Any]:
    problem = build(cfg, data, seed, None)
    lam = problem.init_hparams()
    res = greedy_hd(problem, lam, lr=cfg.greedy_lr, clip=cfg.greedy_clip, T=cfg.T)
    if res.state is None:
        acc = {"val_acc": constant_accuracy(data.val), "test_acc": constant_accuracy(data.test), "val_loss": float("inf")}
    else:
        acc = {"val_acc": accuracy(problem, res.state, data.val), "test_acc": accuracy(problem, res.state, data.test),
               "val_loss": float(problem.val_loss_at(res.state, lam))}
    sched = {k.split(".", 1)[1]: v.reshape(-1).tolist() for k, v in res.schedule.items()}
    return {**acc, "diverged": res.diverged, "hparams": _values(lam), "schedule": sched,
            "step_equivalents": res.cost.step_equivalents, "seconds": res.seconds, "outer_steps": cfg.T}


def _answer(problem: InnerProblem, result: SearchResult, data: Splits, budget: dict[str, float]) -> dict[str, Any]:
    """The search's answer at equal step-equivalents (the row's numbers) and at equal wall-clock."""
    out: dict[str, Any] = {}
    for name, kw in (("steps", {"steps": budget["step_equivalents"]}), ("seconds", {"seconds": budget["seconds"]})):
        trials = result.within(**kw)
        best = min(trials, key=lambda t: t.value)
        out[name] = {**score(problem, best.lam, data), "trials": len(trials), "best_trial": best.number,
                     "hparams": _values(best.lam), "step_equivalents": sum(t.steps for t in trials),
                     "seconds": sum(t.seconds for t in trials)}
    return {**{k: v for k, v in out["steps"].items()}, "at_equal_seconds": out["seconds"],
            "trials_total": len(result.trials), "diverged_trials": sum(t.diverged for t in result.trials),
            "schedule": per_step(problem, result.best_within(steps=budget["step_equivalents"]).lam, problem.horizon_or(None)),
            "info": result.info}


def _search(cfg: SchedulesConfig, data: Splits, seed: int, kind: str, budget: dict[str, float],
            journal: str | None) -> dict[str, Any]:
    problem = build(cfg, data, seed, cfg.lr_values)
    kw: dict[str, Any] = dict(budget=int(budget["step_equivalents"]), seconds=float(budget["seconds"]), seed=seed,
                              penalty=cfg.penalty)
    if kind == "random search":
        result = random_search(problem, BOX(cfg), **kw)
    else:
        result = tpe_search(problem, BOX(cfg), n_startup_trials=cfg.tpe_startup, storage=journal,
                            study_name=f"tpe-seed{seed}", **kw)
    return _answer(problem, result, data, budget)


def _hand(cfg: SchedulesConfig, data: Splits, seed: int) -> dict[str, Any]:
    problem = build(cfg, data, seed, cfg.T)
    grid = {"lr": [cosine(a, cfg.T) for a in cfg.hand_alpha0], "momentum": list(cfg.hand_momentum),
            "weight_decay": [0.0]}
    t0 = time.perf_counter()
    result = grid_search(problem, grid, penalty=cfg.penalty)
    seconds = time.perf_counter() - t0
    best = result.best
    return {**score(problem, best.lam, data), "hparams": {"alpha0": cfg.hand_alpha0[best.number // len(cfg.hand_momentum)],
                                                          "momentum": float(best.lam["optim.momentum"])},
            "schedule": per_step(problem, best.lam, cfg.T), "step_equivalents": result.steps, "seconds": seconds,
            "trials_total": len(result.trials), "grid": [{"value": t.value, "diverged": t.diverged} for t in result.trials]}


def run_method(method: str, cfg: SchedulesConfig, dataset: str, seed: int, data: Splits,
               budget: dict[str, float] | None = None, journal: str | None = None) -> dict[str, Any]:
    """One row on one (dataset, seed). ``budget`` (random search, TPE): ours' step-equivalents and seconds."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; methods are {list(METHODS)}")
    t0 = time.perf_counter()
    if method == "ours":
        rec = _non_greedy(cfg, data, seed, lr_values=cfg.lr_values, estimator="fmd", hvp_clip=cfg.hvp_clip)
    elif method == "ours (exact FMD)":
        rec = _non_greedy(cfg, data, seed, lr_values=cfg.lr_values, estimator="fmd")
    elif method == "non-greedy, unshared (RMD)":
        rec = _non_greedy(cfg, data, seed, lr_values=cfg.T, estimator="rmd")
    elif method == "greedy HD":
        rec = _greedy(cfg, data, seed)
    elif method in ("random search", "TPE"):
        if budget is None:
            raise ValueError(f"{method} needs ours' budget (step_equivalents, seconds)")
        rec = _search(cfg, data, seed, method, budget, journal)
    else:
        rec = _hand(cfg, data, seed)
    return {"method": method, "dataset": dataset, "seed": seed, **rec, "wall_seconds": time.perf_counter() - t0,
            "pid": os.getpid()}
