"""The cost benchmark (Table 3): seconds, peak memory and primitive counts of one inner optimization
of one task (with its outer steps) per estimator, and HyperDistill's LinearEstimation on its own."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, cast

import torch

from ...diagnostics.memory import SavedTensorMeter, peak_heap_bytes
from .config import ESTIMATORS, SinusoidConfig
from .tasks import _sampler
from ...drivers.meta import inner_optimizations
from .train import make_estimator, make_learner

if TYPE_CHECKING:
    from ...core.state import Cost
    from ...estimators.hyperdistill import HyperDistill

__all__ = ["cost_benchmark"]


def cost_benchmark(cfg: SinusoidConfig, chosen: dict, seed: int = 0) -> dict:
    """Seconds (median of ``cost_repeats``, methods interleaved round-robin), peak tensor memory and
    primitive counts of one inner optimization of one task, including its outer steps."""
    torch.set_num_threads(cfg.threads)
    learner = make_learner(cfg, seed)
    phi = learner.init_weights()
    sampler = _sampler(cfg, cfg.query)
    gen = torch.Generator().manual_seed(seed + 555)
    task = sampler.sample(gen)
    setups = {}
    for method in ESTIMATORS:
        lam = learner.init_hparams()
        est = make_estimator(method, cfg, seed, chosen.get(method))
        setups[method] = (est, lam, torch.optim.Adam(list(lam.values()), lr=cfg.hyper_lr), est.new_state())

    def one(method: str) -> Cost:
        est, lam, outer, est_state = setups[method]
        p = learner.problem(task)
        inner_optimizations([p], est, lam, outer, [p.init_state(phi)], cfg.T, est_state, divergence="record")
        return p.cost

    for m in ESTIMATORS:                      # warm-up (and HyperDistill's first θ fit)
        one(m)
    samples: dict[str, list[float]] = {m: [] for m in ESTIMATORS}
    for _ in range(cfg.cost_repeats):
        for m in ESTIMATORS:
            t0 = time.perf_counter()
            c = one(m)
            samples[m].append(time.perf_counter() - t0)
    out = {}
    for m in ESTIMATORS:
        with SavedTensorMeter() as meter:
            c = one(m)
        out[m] = {"seconds_median": statistics.median(samples[m]), "seconds_samples": samples[m],
                  "peak_bytes": peak_heap_bytes(lambda: one(m)), "saved_tensor_peak_bytes": meter.peak,
                  "cost": dataclasses.asdict(c)}
    # HyperDistill's LinearEstimation (run every hd_period inner optimizations), timed on its own
    from ...estimators.hyperdistill import linear_estimation
    est, lam, _, _ = setups["HyperDistill"]
    p = learner.problem(task)
    t0 = time.perf_counter()
    _, info = linear_estimation(p, {k: v.detach() for k, v in lam.items()}, p.init_state(phi), cfg.T,
                                cast("HyperDistill", est).gamma,
                                generator=torch.Generator().manual_seed(0))
    out["HyperDistill"]["linear_estimation"] = {"seconds": time.perf_counter() - t0,
                                                "cost": dataclasses.asdict(info["cost"]),
                                                "every": cfg.hd_period}
    return out
