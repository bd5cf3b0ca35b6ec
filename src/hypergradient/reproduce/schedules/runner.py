"""The orchestration: one JSON per finished job under ``out/seeds/`` (a method on a (dataset, seed),
a (kind, source) of the spread study, the cost table), refused when written with another
configuration; a pool of worker processes; :func:`run` (jobs, tables, plots, ``results.json``) and
:func:`main`. Random search and TPE start once ours has finished on their (dataset, seed): their
budget is ours' step-equivalents and seconds."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from ..common import write_json
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


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_").lower()


def job_path(out: str, job: Job) -> str:
    if job[0] == "table":
        _, ds, method, seed = job
        return os.path.join(out, "seeds", f"{ds}_{_slug(method)}_seed{seed}.json")
    if job[0] == "spread":
        return os.path.join(out, "seeds", f"spread_{_slug(job[1])}_{job[2]}.json")
    return os.path.join(out, "seeds", "cost.json")


def _load(path: str, cfg: SchedulesConfig) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if rec.get("fingerprint") != cfg.fingerprint():
        raise RuntimeError(f"{path} was written with a different configuration (fingerprint {rec.get('fingerprint')} "
                           f"!= {cfg.fingerprint()}); use another --out directory or delete the old seed files")
    return rec


def _job(cfg: SchedulesConfig, job: Job, path: str, budget: dict[str, float] | None) -> dict[str, Any]:
    """Run one job (in a worker process or in this one) and write its JSON."""
    torch.set_num_threads(cfg.threads)
    if job[0] == "table":
        _, ds, method, seed = job
        journal = path[:-5] + ".journal" if method == "TPE" else None
        rec = run_method(method, cfg, ds, int(seed), splits(cfg, ds, int(seed)), budget, journal)
    elif job[0] == "spread":
        rec = spread_job(cfg, splits(cfg, cfg.spread_dataset, 0, dtype=torch.float64), job[1], job[2])
    else:
        rec = cost_table(cfg, splits(cfg, cfg.datasets[0], 0))
    rec["fingerprint"] = cfg.fingerprint()
    write_json(path, rec)
    return rec


def run(cfg: SchedulesConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Every job not yet on disk, then the summary, ``table.md``, the plots and ``results.json``."""
    import hypergradient
    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    os.makedirs(os.path.join(out, "seeds"), exist_ok=True)
    seeds = [str(s) for s in range(cfg.seeds)]
    table_jobs: list[Job] = [("table", ds, m, s) for ds in cfg.datasets for s in seeds for m in METHODS]
    jobs: list[Job] = table_jobs + [("spread", k, src) for src in SOURCES for k in KINDS] + [("cost",)]
    done: dict[Job, dict[str, Any]] = {}
    for j in jobs:
        rec = _load(job_path(out, j), cfg)
        if rec is not None:
            done[j] = rec
    needs_budget = ("random search", "TPE")

    def ready(j: Job) -> dict[str, float] | None | bool:
        """The budget a job runs with (None: none needed); False while ours has not finished."""
        if j[0] != "table" or j[2] not in needs_budget:
            return None
        ours = done.get(("table", j[1], "ours", j[3]))
        return False if ours is None else {"step_equivalents": ours["step_equivalents"], "seconds": ours["seconds"]}

    left = [j for j in jobs if j not in done]
    bar = tqdm(total=len(jobs), initial=len(done), desc="jobs", unit="job", disable=quiet, dynamic_ncols=True)
    pool = ProcessPoolExecutor(workers, mp_context=__import__("multiprocessing").get_context("spawn")) \
        if workers > 1 else None
    running: dict[Future, Job] = {}
    try:
        while left or running:
            for j in [j for j in left if ready(j) is not False]:
                if pool is None:
                    bar.set_postfix_str(" ".join(j[1:])[:40])
                    done[j] = _job(cfg, j, job_path(out, j), ready(j) or None)  # type: ignore[arg-type]
                    bar.update()
                else:
                    running[pool.submit(_job, cfg, j, job_path(out, j), ready(j) or None)] = j  # type: ignore[arg-type]
                left.remove(j)
            if running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    j = running.pop(f)
                    done[j] = f.result()          # re-raises a worker's error
                    bar.update()
                    bar.set_postfix_str(f"done {' '.join(j[1:])}"[:40])
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    records = {ds: {m: [done[("table", ds, m, s)] for s in seeds] for m in METHODS} for ds in cfg.datasets}
    spreads = [done[("spread", k, src)] for src in SOURCES for k in KINDS]
    result = summarize(cfg, records, spreads, {k: v for k, v in done[("cost",)].items() if k != "fingerprint"})
    result.update(version=hypergradient.__version__, torch=torch.__version__, python=platform.python_version(),
                  optuna=_optuna_version(), machine={"cpus": os.cpu_count(), "workers": workers,
                                                     "threads_per_worker": cfg.threads, "platform": platform.platform()},
                  wall_seconds_this_call=time.perf_counter() - t0)
    write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots(records, spreads, out)
    if not quiet:
        print(md)
    return result


def _optuna_version() -> str | None:
    try:
        import optuna
        return str(optuna.__version__)
    except ImportError:
        return None


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce schedules``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = SchedulesConfig.make_quick(**kw) if quick else SchedulesConfig.full(**kw)
    out = out or ("runs/schedules-quick" if quick else "results/schedules")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    if not quiet:
        print(f"schedules reproduction: {cfg.seeds} seeds x {len(cfg.datasets)} data sets, {workers} workers -> {out}",
              file=sys.stderr)
    return run(cfg, out, workers=workers, quiet=quiet)
