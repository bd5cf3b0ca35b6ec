"""The sinusoid experiment's configuration: the methods compared, the paper's numbers, the fixed task
seeds, :class:`SinusoidConfig` (every value a run depends on) and the tuning grid."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["METHODS", "BASELINES", "ESTIMATORS", "ESTIMATOR_OPTIONS", "PAPER_TABLE4", "TASK_SEEDS",
           "SinusoidConfig", "options_grid", "SAFEGUARDS", "DRIVER_OPTIONS", "INFEASIBLE"]

# method label -> (registry name, options fixed for all runs); tuned options are added per run
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "FO": ("first_order", {}),
    "1-step": ("one_step", {}),
    "DrMAD": ("drmad", {}),
    "N.IFT": ("ift", {"solver": "neumann"}),
    "HyperDistill": ("hyperdistill", {}),
    # issue 15: HyperDistill with a safeguard chosen on meta-validation (grid: SAFEGUARDS), and the exact
    # online hypergradient through every step so far / the last 5 (online truncated reverse mode)
    "HyperDistill+safeguard": ("hyperdistill", {}),
    "online RMD": ("online_rmd", {"storage": "graph"}),      # every step kept: no recomputation
    "online RMD (K=5)": ("online_rmd", {"window": 5}),
    "RMD": ("rmd", {"storage": "graph"}),
    # issue 16: every other registered estimator (one table with all of them; fmd: INFEASIBLE below)
    "truncated RMD (K=5)": ("truncated_rmd", {"K": 5}),
    "SAMA": ("sama", {}),
    "EvoGrad": ("evograd", {}),
    "ES": ("es", {}),
    "PES (K=5)": ("pes", {"K": 5}),
    "Reptile only": ("first_order", {}),
}
# registered estimators without a row, and why (the table says so in their place)
INFEASIBLE = {
    "FMD": ("fmd", "not run: forward mode carries one tangent column per entry of λ, and λ (the ANIL body) has "
                   "20,400 entries: ~20,400 JVPs per inner step, about 20,400× 1-step's cost (hours per inner "
                   "optimization, weeks per 5-seed run on 2 cores)"),
}
# baselines: λ never moves (Adam with lr 0), only Reptile learns φ; no cosines, no cost row
BASELINES = ("Reptile only",)
ESTIMATORS = tuple(m for m in METHODS if m not in BASELINES)
# the paper's option labels (kept in the grid, the tables, results.json and the job names) -> the
# estimator's option names: N.IFT(N, K) is ift(solver="neumann", maxiter=N, window=K)
ESTIMATOR_OPTIONS = {"N.IFT": {"N": "maxiter", "K": "window"}}
PAPER_TABLE4 = {"FO": (0.567, 0.193), "1-step": (0.670, 0.283), "DrMAD": (1.086, 0.176),
                "N.IFT": (0.502, 0.146), "HyperDistill": (0.327, 0.052), "HyperDistill+safeguard": None,
                "online RMD": None, "online RMD (K=5)": None, "RMD": None, "Reptile only": None,
                "truncated RMD (K=5)": None, "SAMA": None, "EvoGrad": None, "ES": None, "PES (K=5)": None}
# options read by the meta-training driver, not the estimator (the hyper learning rate decayed to 0)
DRIVER_OPTIONS = ("lr_decay",)
# The safeguarded HyperDistill's grid, fixed before any run (issue 15; chosen on meta-validation like γ,
# never on meta-test), all at γ = 0.9999 (the audit's setting): θ pooled over the meta-batch and clipped,
# θ smoothed over refits and clipped, a fixed θ = 0.3, the hyper learning rate decayed linearly to 0.
SAFEGUARDS: tuple[dict[str, Any], ...] = (
    {"gamma": 0.9999, "joint": 10, "theta_range": [0.0, 1.0]},
    {"gamma": 0.9999, "theta_smoothing": 0.9, "theta_range": [0.0, 1.0]},
    {"gamma": 0.9999, "theta": 0.3},
    {"gamma": 0.9999, "lr_decay": True})
TASK_SEEDS = {"val": 10_000, "test": 20_000, "probe": 30_000}   # fixed task sets, shared by all runs


@dataclass
class SinusoidConfig:
    """Everything a run depends on: the values Appendix G gives, then our choices where it is silent."""

    # -- from the paper (Appendix G)
    shots: int = 10                      # 10-shot support set (inner training data)
    sizes: tuple = (1, 100, 100, 100, 1)
    T: int = 30                          # inner steps
    inner_lr: float = 0.01
    inner_momentum: float = 0.9
    hyper_lr: float = 1e-3               # Adam
    meta_batch: int = 10
    iterations: int = 30                 # M: inner optimizations per meta-training run (per task slot)
    reptile_lr: float = 1.0
    test_tasks: int = 1000
    gammas: tuple = (0.9, 0.99, 0.999, 0.9999)
    hd_period: int = 50                  # LinearEstimation every 50 inner optimizations (counted over tasks)
    # -- our choices (the paper is silent)
    query: int = 10                      # query points per task for the hypergradient (meta-train, meta-val)
    eval_query: int = 100                # query points per meta-val / meta-test task (a finer estimate of its MSE)
    val_tasks: int = 500                 # meta-validation tasks (γ and (N, K) selection, curves)
    nift_grid: tuple = ((2, 8), (5, 3), (10, 2))   # (N, K): the paper's T=100 grid scaled to T=30
    tune_seeds: tuple = (100, 101)       # meta-training seeds for tuning, disjoint from evaluation seeds
    seeds: int = 5                       # evaluation seeds 0 .. seeds-1
    cosine_points: tuple = (0, 10, 20, 30)  # meta-iterations at which cosines to RMD are measured
    cosine_tasks: int = 5                # probe tasks per cosine measurement
    cost_repeats: int = 5                # inner optimizations per method in the interleaved cost benchmark
    dtype: str = "float32"
    threads: int = 1                     # torch intra-op threads per worker process
    quick: bool = False

    @classmethod
    def full(cls, **kw: Any) -> "SinusoidConfig":
        return cls(**kw)

    @classmethod
    def make_quick(cls, **kw: Any) -> "SinusoidConfig":
        """A smoke-test size: 3 meta-iterations of 2 tasks, few evaluation tasks, 1 seed."""
        base: dict[str, Any] = dict(meta_batch=2, iterations=3, test_tasks=50, val_tasks=20, tune_seeds=(100,), seeds=1,
                    cosine_points=(0, 3), cosine_tasks=2, cost_repeats=1, hd_period=50, quick=True)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: ([list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v)
                for k, v in d.items()}

    def fingerprint(self, method: str | None = None) -> str:
        """Hash of everything that changes a run's numbers (not the number of seeds): the configuration
        and, for one ``method``'s runs, its estimator, its tuning grid and — for HyperDistill, whose runs
        also measure every other method's cosines at their checkpoints — every row (``None``: all rows,
        the whole reproduction). Adding a row reruns HyperDistill's runs and the new row's only."""
        d: dict[str, Any] = {k: v for k, v in self.to_dict().items() if k not in ("seeds", "threads", "cost_repeats")}
        rows = {m: [name, opts] for m, (name, opts) in METHODS.items()}
        if method is None or method == "HyperDistill":
            d["methods"], d["grids"] = rows, options_grid(self)
        else:
            d["method"], d["grid"] = rows[method], options_grid(self).get(method)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def options_grid(cfg: SinusoidConfig) -> dict:
    """The tuned methods' options, in the paper's labels: γ of HyperDistill, (N, K) of N.IFT."""
    return {"HyperDistill": [{"gamma": g} for g in cfg.gammas],
            "HyperDistill+safeguard": [dict(o, joint=min(o["joint"], cfg.meta_batch)) if "joint" in o else dict(o)
                                       for o in SAFEGUARDS],
            "N.IFT": [{"N": n, "K": k} for n, k in cfg.nift_grid]}
