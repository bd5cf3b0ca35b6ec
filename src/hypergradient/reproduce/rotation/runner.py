"""Jobs (a method on a seed), resume, :func:`run` and :func:`main`."""

from __future__ import annotations

from typing import Any

from ..common import JobStore, entry, finish, is_main, run_jobs, slug
from .config import METHODS, RotationConfig
from .methods import run_method
from .report import markdown, plots, summarize

__all__ = ["run", "main"]


def _job(payload: tuple[RotationConfig, str, int], extra: Any) -> dict[str, Any]:
    cfg, method, seed = payload
    return run_method(method, cfg, seed)


def run(cfg: RotationConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    store = JobStore(out, cfg.fingerprint())
    jobs = {f"{slug(m)}_seed{s}": (cfg, m, s) for s in range(cfg.seeds) for m in METHODS}
    done = run_jobs(jobs, _job, store, workers=workers, threads=cfg.threads, quiet=quiet, desc="rotation jobs")
    if not is_main():
        return {"note": "under torchrun the summary, tables and plots are rank 0's"}
    records = {m: [done[f"{slug(m)}_seed{s}"] for s in range(cfg.seeds)] for m in METHODS}
    return finish(out, summarize(cfg, records), markdown, lambda: plots(records, out), quiet)


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce rotation``."""
    return entry(RotationConfig, "rotation", run, quick=quick, seeds=seeds, out=out, workers=workers, quiet=quiet)
