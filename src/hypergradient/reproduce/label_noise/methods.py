"""One run of a method on one seed (test accuracy of the final model; the learned weighting of clean
vs noisy examples), and the Fig. 7 analogue: seconds and memory per step across model widths."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ...diagnostics.memory import HeapMeter, SavedTensorMeter
from ...drivers.online import run_online
from ...estimators import get
from .config import METHODS, LabelNoiseConfig
from .problem import accuracy, build, splits

__all__ = ["run_method", "cost_sweep", "COST_METHODS", "LOSS_GRID"]

COST_METHODS = ("EvoGrad", "T1-T2 (one_step)")
LOSS_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)      # losses at which the learned w(ℓ) is reported


def _estimator(method: str) -> Any:
    name, options = METHODS[method]
    return get(str(name), **dict(options))


def run_method(method: str, cfg: LabelNoiseConfig, seed: int) -> dict[str, Any]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; methods are {list(METHODS)}")
    data = splits(cfg, seed)
    weighted = METHODS[method][0] is not None
    problem = build(cfg, data, seed, weighted)
    lam = problem.init_hparams()
    t0 = time.perf_counter()
    if not weighted:
        with torch.no_grad():
            state, _ = problem.run(problem.init_state(), lam, cfg.T)
    else:
        outer = torch.optim.Adam(list(lam.values()), lr=cfg.meta_lr)
        state = run_online(problem, _estimator(method), lam, outer, T=cfg.T, progress=False).state
    seconds = time.perf_counter() - t0
    rec: dict[str, Any] = {"method": method, "seed": seed, "test_acc": accuracy(problem, state, data.test),
                           "seconds": seconds, "step_equivalents": problem.cost.step_equivalents}
    if weighted:      # the learned weights of the examples whose labels are clean vs noisy
        with torch.no_grad():
            X, y = data.train
            losses = torch.nn.functional.cross_entropy(problem.forward(state)(X), y, reduction="none")
            w = problem.spec.view(lam)["mwn"](losses.unsqueeze(-1)).squeeze(-1)
            noisy = y != data.clean_train
            rec["weight_clean"], rec["weight_noisy"] = float(w[~noisy].mean()), float(w[noisy].mean())
            grid = torch.tensor(LOSS_GRID, dtype=torch.float32).unsqueeze(-1)           # the learned weighting function w(ℓ)
            rec["weight_curve"] = problem.spec.view(lam)["mwn"](grid).squeeze(-1).tolist()
    return rec


def _one_step_cost(problem: Any, lam: Any, est: Any, state: Any, est_state: Any) -> tuple[float, int, int]:
    """(seconds, heap peak above the start, autograd's saved bytes) of one online step (hypergradient and
    the model's step) from ``state``."""
    carry = est.online_init(problem, lam, state, est_state)
    t0 = time.perf_counter()
    est.online_step(problem, lam, state, carry)
    sec = time.perf_counter() - t0
    with SavedTensorMeter() as saved, HeapMeter() as heap:
        est.online_step(problem, lam, state, est.online_init(problem, lam, state, est_state))
    return sec, int(heap.peak or 0), int(saved.peak)


def cost_sweep(cfg: LabelNoiseConfig) -> dict[str, Any]:
    """Per width: median seconds per step (methods interleaved, ``cost_steps`` repeats), heap peak and
    saved bytes above the step's start, of EvoGrad and T1–T2, side by side in this one process."""
    data = splits(cfg, 0)
    out: dict[str, Any] = {}
    for width in cfg.widths:
        setups = {}
        for m in COST_METHODS:
            problem = build(cfg, data, 0, True, width=width, T=cfg.cost_steps + 2)
            lam = problem.init_hparams()
            est = _estimator(m)
            if m == "EvoGrad":
                est.check_noise = False
            st = est.new_state()
            state = problem.init_state()
            setups[m] = (problem, lam, est, state, st)
            _one_step_cost(problem, lam, est, state, st)        # warm-up
        secs: dict[str, list[float]] = {m: [] for m in COST_METHODS}
        heap: dict[str, int] = {}
        saved: dict[str, int] = {}
        for _ in range(cfg.cost_steps):
            for m in COST_METHODS:
                s, h, b = _one_step_cost(*setups[m])
                secs[m].append(s)
                heap[m], saved[m] = max(heap.get(m, 0), h), max(saved.get(m, 0), b)
        n_params = sum(p.numel() for p in setups[COST_METHODS[0]][3].params)
        out[str(width)] = {"params": n_params, **{m: {"seconds_median": statistics.median(secs[m]),
                                                      "heap_peak_bytes": heap[m], "saved_peak_bytes": saved[m]}
                                                  for m in COST_METHODS}}
    return out
