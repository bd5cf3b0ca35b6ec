"""Jobs (a method on a seed; the cost sweep), resume, :func:`run` and :func:`main`."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..common import JobStore, is_main, run_jobs, slug, write_json
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
    write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots(result, out)
    if not quiet:
        print(md)
    return result


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce label-noise``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = LabelNoiseConfig.make_quick(**kw) if quick else LabelNoiseConfig.full(**kw)
    out = out or ("runs/label-noise-quick" if quick else "results/label-noise")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    if not quiet:
        print(f"label noise: {cfg.seeds} seeds x {len(METHODS)} methods, {workers} workers -> {out}", file=sys.stderr)
    return run(cfg, out, workers=workers, quiet=quiet)
