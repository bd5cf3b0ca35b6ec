"""Jobs (one per population, one per trajectory setting), resume, :func:`run` and :func:`main`."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from ..common import JobStore, entry, finish, is_main, run_jobs
from .config import ToyConfig
from .experiment import closed_form, estimates, trajectories
from .report import markdown, plots, summarize

__all__ = ["run", "main"]


def _job(payload: tuple[ToyConfig, str, Any], extra: Any) -> dict[str, Any]:
    cfg, kind, arg = payload
    if kind == "estimates":
        lams = torch.linspace(cfg.lam_lo, cfg.lam_hi, cfg.n_lams, dtype=torch.float64)
        return {"K": arg, "lams": lams.tolist(), "truth": closed_form(lams).tolist(),
                "estimates": estimates(cfg, arg).tolist()}
    K, x0, lam0, steps = arg
    runs = [trajectories(cfg, K, x0, lam0, steps, None if K is None else 100 * r + 1) for r in
            range(1 if K is None else cfg.traj_trials)]
    return {"arg": list(arg), "runs": runs}


def run(cfg: ToyConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    store = JobStore(out, cfg.fingerprint())
    jobs: dict[str, Any] = {f"estimates_K{K}": (cfg, "estimates", K) for K in cfg.populations}
    for x0, lam0 in cfg.traj_starts:
        for steps in (cfg.traj_steps, cfg.traj_long):
            for K in (None, 2, 100):
                jobs[f"traj_{'closed' if K is None else f'K{K}'}_x{x0}_l{lam0}_n{steps}"] = (cfg, "traj", (K, x0, lam0, steps))
    done = run_jobs(jobs, _job, store, workers=workers, quiet=quiet, desc="toy jobs")
    if not is_main():
        return {"note": "under torchrun the summary, tables and plots are rank 0's"}
    est = {K: done[f"estimates_K{K}"] for K in cfg.populations}
    traj: dict[str, Any] = {}
    for name, rec in done.items():
        if name.startswith("traj_"):
            ends = [r["lam"][-1] for r in rec["runs"]]
            K, x0, lam0, steps = rec["arg"]
            label = f"{'closed form' if K is None else f'EvoGrad K={K}'}, (x0, λ0) = ({x0}, {lam0}), {steps} steps"
            traj[label] = {"runs": rec["runs"], "lam_end_mean": statistics.mean(ends),
                           "lam_end_std": statistics.stdev(ends) if len(ends) > 1 else None}
    long = {k: v for k, v in traj.items() if k.endswith(f"{cfg.traj_long} steps")}
    return finish(out, summarize(cfg, est, traj), markdown, lambda: plots(cfg, est, long, out), quiet)


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce evograd-toy`` (``--seeds`` is not used: the noise of every
    estimate is seeded by its population and trial)."""
    return entry(ToyConfig, "evograd-toy", run, quick=quick, seeds=None, out=out, workers=workers, quiet=quiet)
