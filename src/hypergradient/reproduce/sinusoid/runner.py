"""The orchestration: job names and the resumable job cache (one JSON per finished run under
``out/seeds/``, refused when written with another configuration), the pool of worker processes,
:func:`run` (tuning, evaluation runs, cost benchmark, tables, plots) and :func:`main`."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any, Iterable, cast

import torch

from ..common import barrier, ranks_of_torchrun, share, write_json
from .config import ESTIMATORS, METHODS, SinusoidConfig, options_grid
from .cost import cost_benchmark
from .plots import plots
from .report import choose, markdown, summarize
from .train import train_one

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["run", "main"]


# ---- jobs and resume --------------------------------------------------------------------------------
def _job_name(kind: str, method: str, seed: int, options: dict) -> str:
    method = method.replace(" ", "_")
    if kind == "tune":
        tag = "_".join(f"{k}{v}" for k, v in sorted(options.items())).replace(" ", "")
        return f"tune_{method}_{tag}_seed{seed}"
    return f"{method}_seed{seed}"


def _job_path(out: str, kind: str, method: str, seed: int, options: dict) -> str:
    return os.path.join(out, "seeds", _job_name(kind, method, seed, options) + ".json")


def _job(payload: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """Run one job (in a worker process or in this one), write its JSON, return (path, record)."""
    kind, method, seed, options, shared, cfg, path, queue, tick = payload
    if queue is not None:
        tick = lambda: queue.put(1)  # noqa: E731
    rec = train_one(method, cfg, seed, options, shared_cosines=shared, evaluate_test=(kind == "main"), tick=tick)
    rec["kind"] = kind
    write_json(path, rec)
    return path, rec


def _load(path: str, cfg: SinusoidConfig, method: str) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if rec.get("fingerprint") != cfg.fingerprint(method):
        raise RuntimeError(f"{path} was written with a different configuration (fingerprint "
                           f"{rec.get('fingerprint')} != {cfg.fingerprint(method)}); use another --out directory "
                           "or delete the old seed files")
    return rec


# ---- the worker pool --------------------------------------------------------------------------------
class _Runner:
    """Runs jobs in this process (workers = 1) or in a pool of spawned worker processes, with one
    tqdm bar over all meta-iterations (episodes). A job counts as done once its JSON is on disk."""

    pool: ProcessPoolExecutor | None
    queue: Any      # a multiprocessing.Manager().Queue() proxy
    manager: Any    # a multiprocessing SyncManager

    def __init__(self, cfg: SinusoidConfig, out: str, workers: int, total: int, quiet: bool) -> None:
        from tqdm.auto import tqdm
        self.cfg, self.out, self.workers = cfg, out, workers
        self.bar = tqdm(total=total, desc="meta-iterations", unit="it", disable=quiet, dynamic_ncols=True)
        self.pool = self.queue = self.manager = None
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            ctx = mp.get_context("spawn")
            self.manager = ctx.Manager()
            self.queue = self.manager.Queue()
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx)

    def payload(self, kind: str, method: str, seed: int, options: dict, shared: dict | None) -> tuple:
        path = _job_path(self.out, kind, method, seed, options)
        return (kind, method, seed, options, shared, self.cfg, path, self.queue, None)

    def start(self, payloads: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Handles for the payloads: futures (pool) or the payloads themselves (run at ``wait``)."""
        if self.pool is None:
            return list(payloads)
        return [self.pool.submit(_job, pl) for pl in payloads]

    def wait(self, handles: list[Any]) -> list[dict[str, Any]]:
        """The records of the handles, in order."""
        if self.pool is None:
            out = []
            for pl in handles:
                self.bar.set_postfix_str(os.path.basename(pl[6])[:-5])
                out.append(_job(pl[:8] + (lambda: self.bar.update(1),))[1])
            return out
        pending = set(handles)
        while pending:
            self._ticks()
            done = {f for f in pending if f.done()}
            for f in done:
                self.bar.set_postfix_str(f"done {os.path.basename(f.result()[0])[:-5]}")  # re-raises errors
            pending -= done
            time.sleep(0.2)
        self._ticks()
        return [f.result()[1] for f in handles]

    def _ticks(self) -> None:
        while not self.queue.empty():
            self.bar.update(self.queue.get())

    def close(self) -> None:
        self.bar.close()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.manager.shutdown()


# ---- the whole reproduction -------------------------------------------------------------------------
def run(cfg: SinusoidConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict:
    """The whole reproduction: tuning, the evaluation runs, the cost benchmark, tables, plots, JSON.
    Finished runs are read back from ``out/seeds/`` instead of being run again."""
    import hypergradient
    t0 = time.perf_counter()
    os.makedirs(os.path.join(out, "seeds"), exist_ok=True)
    torch.set_num_threads(cfg.threads)
    grid = options_grid(cfg)
    eval_seeds = list(range(cfg.seeds))

    def path_of(kind: str, method: str, seed: int, options: dict[str, Any]) -> str:
        return _job_path(out, kind, method, seed, options)

    records: dict = {}

    Job = tuple[str, str, int, dict]

    def todo(jobs: list[Job]) -> list[Job]:
        left = []
        for job in jobs:
            rec = _load(path_of(*job), cfg, job[1])
            if rec is None:
                left.append(job)
            else:
                records[path_of(*job)] = rec
        return left

    tune = todo([("tune", m, s, o) for m, opts in grid.items() for o in opts for s in cfg.tune_seeds])
    fixed = todo([("main", m, s, {}) for s in eval_seeds for m in METHODS if m not in grid])
    tuned: list[tuple[str, str, int, dict]] = [("main", m, s, {}) for m in grid for s in eval_seeds]
    tuned_left = [j for j in tuned if _load(path_of(*j), cfg, j[1]) is None]
    ranks = ranks_of_torchrun()       # under torchrun: each rank runs its share of the jobs, one at a time
    if ranks is not None:
        workers = 1
        barrier()                     # every rank has listed what is on disk before any rank writes

    def reload(jobs: list[Job]) -> None:
        """(torchrun) every rank reads back what the others finished."""
        if ranks is not None:
            barrier()
            for j in jobs:
                records[path_of(*j)] = cast(dict, _load(path_of(*j), cfg, j[1]))
    runner = _Runner(cfg, out, workers, cfg.iterations * (len(tune) + len(fixed) + len(tuned_left)),
                     quiet or (ranks is not None and ranks[0] != 0))
    rec: dict[str, Any] | None    # a job's record; None where it is not on disk yet
    try:
        h_tune = runner.start([runner.payload(*j, None) for j in share(tune)])
        h_fixed = runner.start([runner.payload(*j, None) for j in fixed]) if runner.pool is not None else None
        for j, rec in zip(share(tune), runner.wait(h_tune)):
            records[path_of(*j)] = rec
        reload(tune)
        tuning, chosen = choose(cfg, grid, records, path_of)
        shared = {m: chosen.get(m, {}) for m in ESTIMATORS if m != "HyperDistill"}
        left = []
        for j in todo(tuned):
            left.append(j)
        for j in tuned:
            rec = records.get(path_of(*j))
            if rec is not None and rec.get("options") != chosen[j[1]]:
                raise RuntimeError(f"{path_of(*j)} was run with {rec.get('options')}, but the tuning now "
                                   f"chooses {chosen[j[1]]}; delete it to rerun")
        if ranks is not None:
            barrier()       # every rank has read the disk before any writes its share of the main jobs
        left = share(left)
        h_tuned = runner.start([runner.payload(k, m, s, chosen[m], shared if m == "HyperDistill" else None)
                                for k, m, s, _ in left])
        if h_fixed is None:
            h_fixed = runner.start([runner.payload(*j, None) for j in share(fixed)])
        for j, rec in zip((share(fixed) if runner.pool is None else fixed) + left, runner.wait(h_fixed + h_tuned)):
            records[path_of(*j)] = rec
        reload(fixed + tuned)
    finally:
        runner.close()
    if ranks is not None and ranks[0] != 0:
        return {"rank": ranks[0], "note": "the summary, the cost benchmark and the plots are rank 0's"}
    main = {m: [records[path_of("main", m, s, {})] for s in eval_seeds] for m in METHODS}
    if not quiet:
        print("cost benchmark (Table 3) ...", file=sys.stderr)
    costs = cost_benchmark(cfg, chosen)
    result = summarize(cfg, main, tuning, chosen, costs)
    result.update(version=hypergradient.__version__, torch=torch.__version__, python=platform.python_version(),
                  machine={"cpus": os.cpu_count(), "workers": workers, "threads_per_worker": cfg.threads,
                           "platform": platform.platform(),
                           "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
                  wall_seconds=time.perf_counter() - t0)
    write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots(result, out)
    if not quiet:
        print(md)
    return result


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict:
    """Entry point of ``hypergradient reproduce sinusoid``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = SinusoidConfig.make_quick(**kw) if quick else SinusoidConfig.full(**kw)
    out = out or ("runs/sinusoid-quick" if quick else "results/sinusoid")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    return run(cfg, out, workers=workers, quiet=quiet)
