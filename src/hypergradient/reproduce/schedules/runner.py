"""The orchestration: the jobs (a method on a (dataset, seed), a (kind, source) of the spread study,
the cost table), each one resumable JSON file (:func:`hypergradient.reproduce.common.run_jobs`);
:func:`run` (jobs, tables, plots, ``results.json``) and :func:`main`. Random search and TPE start once ours has finished on their (dataset, seed): their
budget is ours' step-equivalents and seconds."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from ..common import JobStore, entry, finish, is_main, run_jobs, slug
from .config import METHODS, SchedulesConfig
from .cost import cost_table
from .methods import run_method
from .plots import plots
from .problem import splits
from .report import markdown, summarize
from .spread import KINDS, spread_job
from ...diagnostics.spread import SOURCES

__all__ = ["run", "main"]

Job = tuple[str, ...]    # ("table", dataset, method, seed) | ("spread", kind, source) | ("cost",)


def job_name(job: Job) -> str:
    if job[0] == "table":
        _, ds, method, seed = job
        return f"{ds}_{slug(method)}_seed{seed}"
    if job[0] == "spread":
        return f"spread_{slug(job[1])}_{job[2]}"
    return "cost"


def _job(payload: tuple[SchedulesConfig, Job, str], budget: dict[str, float] | None) -> dict[str, Any]:
    """One job: a Table 1 row on one (dataset, seed), a (kind, source) of the spread study, or the cost table."""
    cfg, job, journal = payload
    if job[0] == "table":
        _, ds, method, seed = job
        return run_method(method, cfg, ds, int(seed), splits(cfg, ds, int(seed)), budget,
                          journal if method == "TPE" else None)
    if job[0] == "spread":
        return spread_job(cfg, splits(cfg, cfg.spread_dataset, 0, dtype=torch.float64), job[1], job[2])
    return cost_table(cfg, splits(cfg, cfg.datasets[0], 0))


def run(cfg: SchedulesConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Every job not yet on disk, then the summary, ``table.md``, the plots and ``results.json``."""
    import hypergradient
    t0 = time.perf_counter()
    store = JobStore(out, cfg.fingerprint())
    seeds = [str(s) for s in range(cfg.seeds)]
    jobs: list[Job] = [("table", ds, m, s) for ds in cfg.datasets for s in seeds for m in METHODS]
    jobs += [("spread", k, src) for src in SOURCES for k in KINDS] + [("cost",)]
    by_name = {job_name(j): j for j in jobs}

    def ready(name: str, done: dict[str, dict[str, Any]]) -> dict[str, float] | None | bool:
        """Random search and TPE run with ours' budget on their (dataset, seed): False until it is done."""
        j = by_name[name]
        if j[0] != "table" or j[2] not in ("random search", "TPE"):
            return None
        ours = done.get(job_name(("table", j[1], "ours", j[3])))
        return False if ours is None else {"step_equivalents": ours["step_equivalents"], "seconds": ours["seconds"]}
    payloads = {n: (cfg, j, store.path(n)[:-5] + ".journal") for n, j in by_name.items()}
    done = run_jobs(payloads, _job, store, workers=workers, threads=cfg.threads, quiet=quiet, ready=ready)
    if not is_main():
        return {"note": "under torchrun the summary, tables and plots are rank 0's"}
    records = {ds: {m: [done[job_name(("table", ds, m, s))] for s in seeds] for m in METHODS} for ds in cfg.datasets}
    spreads = [done[job_name(("spread", k, src))] for src in SOURCES for k in KINDS]
    result = summarize(cfg, records, spreads, {k: v for k, v in done["cost"].items() if k != "fingerprint"})
    result.update(version=hypergradient.__version__, torch=torch.__version__, python=platform.python_version(),
                  optuna=_optuna_version(), machine={"cpus": os.cpu_count(), "workers": workers,
                                                     "threads_per_worker": cfg.threads, "platform": platform.platform()},
                  wall_seconds_this_call=time.perf_counter() - t0)
    return finish(out, result, markdown, lambda: plots(records, spreads, out), quiet)


def _optuna_version() -> str | None:
    try:
        import optuna
        return str(optuna.__version__)
    except ImportError:
        return None


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce schedules``."""
    return entry(SchedulesConfig, "schedules", run, quick=quick, seeds=seeds, out=out, workers=workers, quiet=quiet)
