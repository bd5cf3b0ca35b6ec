"""The cost table: per outer step of each method (one hypergradient, one trial, one online step),
step-equivalents and seconds at the full horizon, and peak in-use heap at the horizons ``cfg.cost_T``
(forward mode's memory is flat in T; reverse mode's grows with it). Seed 0's problem, λ at a typical
learned point (lr 0.1, momentum 0.5)."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ...baselines import evaluate, greedy_hd
from ...diagnostics.memory import SavedTensorMeter, peak_heap_bytes
from ...estimators import estimate
from .config import SchedulesConfig
from .problem import Splits, build

__all__ = ["cost_table", "ROWS"]

# row -> (per what, λ shape: lr values (None: scalar; "T": one per step))
ROWS: dict[str, tuple[str, Any]] = {
    "ours (FMD, Hessian products clipped)": ("outer step", "K"),
    "ours (exact FMD)": ("outer step", "K"),
    "non-greedy, unshared (RMD)": ("outer step", "T"),
    "greedy HD (one online run)": ("run", None),
    "random search / TPE / hand-tuned (one trial)": ("trial", "K"),
}


def _call(cfg: SchedulesConfig, row: str, problem: Any, lam: Any, T: int) -> Callable[[], object]:
    if row.startswith("ours (FMD"):
        return lambda: estimate("fmd", problem, lam, T=T, hvp_clip=cfg.hvp_clip)
    if row.startswith("ours"):
        return lambda: estimate("fmd", problem, lam, T=T)
    if row.startswith("non-greedy"):
        return lambda: estimate("rmd", problem, lam, T=T)
    if row.startswith("greedy"):
        return lambda: greedy_hd(problem, {k: v.detach().clone().requires_grad_() for k, v in lam.items()},
                                 lr=cfg.greedy_lr, clip=cfg.greedy_clip, T=T)
    return lambda: evaluate(problem, lam, T)


def cost_table(cfg: SchedulesConfig, data: Splits) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    out: dict[str, Any] = {}
    for row, (unit, shape) in ROWS.items():
        rec: dict[str, Any] = {"per": unit, "by_T": {}}
        for T in cfg.cost_T:
            K = {"K": cfg.lr_values, "T": T, None: None}[shape]
            problem = build(cfg, data, 0, K, T=T)
            lam = problem.init_hparams()
            with torch.no_grad():
                lam["optim.lr"].fill_(0.1)
                lam["optim.momentum"].fill_(0.5)
            fn = _call(cfg, row, problem, lam, T)
            fn()                                                     # warm-up
            before, t0 = problem.cost.step_equivalents, time.perf_counter()
            fn()
            seconds, spent = time.perf_counter() - t0, problem.cost.step_equivalents - before
            with SavedTensorMeter() as meter:
                fn()
            rec["by_T"][str(T)] = {"step_equivalents": spent, "seconds": seconds, "peak_heap_bytes": peak_heap_bytes(fn),
                                   "saved_tensor_peak_bytes": meter.peak}
        out[row] = rec
    return out
