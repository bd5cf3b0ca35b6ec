"""Jobs (a method on a seed; the cost sweep), resume, :func:`run` and :func:`main`."""

from __future__ import annotations

from typing import Any

from ..common import JobStore, entry, finish, is_main, run_jobs, slug
from .config import METHODS, LabelNoiseConfig
from .methods import cost_sweep, run_method
from .report import markdown, plots, summarize

__all__ = ["run", "main"]


def _job(payload: tuple[LabelNoiseConfig, str, int], extra: Any) -> dict[str, Any]:
    cfg, method, seed = payload
    return cost_sweep(cfg) if method == "cost" else run_method(method, cfg, seed)


def run(cfg: LabelNoiseConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    store = JobStore(out, cfg.fingerprint())
    jobs: dict[str, Any] = {f"{slug(m)}_seed{s}": (cfg, m, s) for s in range(cfg.seeds) for m in METHODS}
    jobs["cost"] = (cfg, "cost", 0)
    done = run_jobs(jobs, _job, store, workers=workers, threads=cfg.threads, quiet=quiet, desc="label-noise jobs")
    if not is_main():
        return {"note": "under torchrun the summary, tables and plots are rank 0's"}
    records = {m: [done[f"{slug(m)}_seed{s}"] for s in range(cfg.seeds)] for m in METHODS}
    result = summarize(cfg, records, {k: v for k, v in done["cost"].items() if k != "fingerprint"})
    return finish(out, result, markdown, lambda: plots(result, out), quiet)


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce label-noise``."""
    return entry(LabelNoiseConfig, "label-noise", run, quick=quick, seeds=seeds, out=out, workers=workers,
                 quiet=quiet)
