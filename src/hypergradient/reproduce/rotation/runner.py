"""Jobs (a method on a seed), resume, :func:`run` and :func:`main`."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..common import JobStore, is_main, run_jobs, slug, write_json
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
    result = summarize(cfg, records)
    write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots(records, out)
    if not quiet:
        print(md)
    return result


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Entry point of ``hypergradient reproduce rotation``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = RotationConfig.make_quick(**kw) if quick else RotationConfig.full(**kw)
    out = out or ("runs/rotation-quick" if quick else "results/rotation")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    if not quiet:
        print(f"rotation: {cfg.seeds} seeds x {len(METHODS)} methods, {workers} workers -> {out}", file=sys.stderr)
    return run(cfg, out, workers=workers, quiet=quiet)
