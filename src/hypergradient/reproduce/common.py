"""What every reproduction shares: JSON that survives a crash (written to a temporary file, then
renamed) and holds no tensors or non-finite floats; resumable jobs (:class:`JobStore`, :func:`run_jobs`:
one file per finished job, a pool of spawned worker processes, one progress bar)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar, cast

import torch

_T = TypeVar("_T")
_C = TypeVar("_C", bound="ReproConfig")

__all__ = ["ReproConfig", "finish", "entry", "write_json", "clean", "slug", "JobStore", "run_jobs", "ranks_of_torchrun", "is_main", "share", "barrier", "ci95", "paired"]


class ReproConfig:
    """What every reproduction's configuration dataclass shares: the full and the smoke-test sizes
    (``QUICK``: the fields a ``--quick`` run changes), a JSON-ready dict, and a fingerprint of every field
    that changes a run's numbers (not ``NOT_FINGERPRINTED``; plus :meth:`fingerprinted`, e.g. the
    methods) that stamps each job file, so a file written with another configuration is refused."""

    QUICK: ClassVar[dict[str, Any]] = {}
    NOT_FINGERPRINTED: ClassVar[tuple[str, ...]] = ("seeds", "threads")

    @classmethod
    def full(cls: type[_C], **kw: Any) -> _C:
        return cls(**kw)

    @classmethod
    def make_quick(cls: type[_C], **kw: Any) -> _C:
        """The smoke-test size (the numbers mean nothing)."""
        return cls(**{**cls.QUICK, "quick": True, **kw})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(cast(Any, self))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def fingerprinted(self) -> dict[str, Any]:
        """What else changes the numbers besides the fields (the methods run)."""
        return {}

    def fingerprint(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self.NOT_FINGERPRINTED}
        d.update(self.fingerprinted())
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def finish(out: str, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str], plots: Callable[[], object],
           quiet: bool) -> dict[str, Any]:
    """A reproduction's last step: ``results.json``, ``table.md`` and the plots in ``out``; the table printed."""
    write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots()
    if not quiet:
        print(md)
    return result


def entry(cfg_class: type[ReproConfig], name: str, run: Callable[..., dict[str, Any]], *, quick: bool,
          seeds: int | None, out: str | None, workers: int | None, quiet: bool) -> dict[str, Any]:
    """``hypergradient reproduce NAME``: the configuration (``--quick``, ``--seeds``), the output folder
    (``results/NAME``, or ``runs/NAME-quick``), the workers (2, 1 with --quick), then ``run``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = cfg_class.make_quick(**kw) if quick else cfg_class.full(**kw)
    out = out or (f"runs/{name}-quick" if quick else f"results/{name}")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    if not quiet:
        print(f"{name}: {getattr(cfg, 'seeds', 1)} seeds, {workers} workers -> {out}", file=sys.stderr)
    return run(cfg, out, workers=workers, quiet=quiet)


def write_json(path: str, obj: Any) -> None:
    """Write ``clean(obj)`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(clean(obj), fh, indent=1)
    os.replace(tmp, path)


def clean(x: Any) -> Any:
    """JSON-safe: tensors to lists, non-finite floats to strings ('inf', 'nan')."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def slug(s: str) -> str:
    """A file-name part for a label: letters and digits kept, the rest '_' ("T1-T2 (one_step)" -> "t1_t2__one_step")."""
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_").lower()


# ---- resumable jobs -------------------------------------------------------------------------------------
class JobStore:
    """One JSON per finished job under ``out/seeds/NAME.json``, stamped with the configuration's
    fingerprint: a file written with another configuration is refused (never silently mixed in)."""

    def __init__(self, out: str, fingerprint: str) -> None:
        self.out, self.fingerprint = out, fingerprint
        os.makedirs(os.path.join(out, "seeds"), exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.out, "seeds", f"{name}.json")

    def load(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self.path(name)) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            return None
        if rec.get("fingerprint") != self.fingerprint:
            raise RuntimeError(f"{self.path(name)} was written with a different configuration (fingerprint "
                               f"{rec.get('fingerprint')} != {self.fingerprint}); use another --out directory or "
                               "delete the old seed files")
        return rec


def _work(fn: Callable[..., dict[str, Any]], payload: Any, extra: Any, path: str, fingerprint: str,
          threads: int) -> dict[str, Any]:
    """Run one job (in a worker process or in this one) and write its JSON there, so that a finished
    job is on disk whatever happens to the others."""
    torch.set_num_threads(threads)
    rec = fn(payload, extra)
    rec["fingerprint"] = fingerprint
    write_json(path, rec)
    return json.loads(json.dumps(clean(rec)))        # what a later run reads back from the file


def run_jobs(jobs: Mapping[str, Any], fn: Callable[..., dict[str, Any]], store: JobStore, *, workers: int = 1,
             threads: int = 1, quiet: bool = False, ready: Callable[[str, dict[str, dict[str, Any]]], Any] | None = None,
             desc: str = "jobs") -> dict[str, dict[str, Any]]:
    """Every job not on disk yet, ``fn(payload, extra)`` (a module-level function: it may run in a
    spawned worker process), ``workers`` at a time, with one progress bar. ``ready(name, done)`` gives
    a job's ``extra`` from the finished records, or ``False`` while what it needs is not done yet
    (random search waiting for ours' budget); without it every job is ready with ``extra=None``.
    Returns {name: record} for all jobs.

    Under ``torchrun`` (W ranks, one worker each, as DESIGN.md asks): in rounds, every rank takes its
    share (every W-th) of the jobs that are ready and not on disk, runs them, and waits for the others
    (a barrier) before all read the finished files back (the output directory must be shared)."""
    from tqdm.auto import tqdm
    ranks = ranks_of_torchrun()
    if ranks is not None:
        return _run_jobs_over_ranks(jobs, fn, store, ranks, threads=threads, quiet=quiet, ready=ready)
    done: dict[str, dict[str, Any]] = {}
    for name in jobs:
        rec = store.load(name)
        if rec is not None:
            done[name] = rec
    left = [n for n in jobs if n not in done]

    def extra_of(name: str) -> Any:
        return None if ready is None else ready(name, done)
    bar = tqdm(total=len(jobs), initial=len(done), desc=desc, unit="job", disable=quiet, dynamic_ncols=True)
    pool = None
    if workers > 1 and len(left) > 1:
        import multiprocessing as mp
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    running: dict[Future, str] = {}
    try:
        while left or running:
            startable = [n for n in left if extra_of(n) is not False]
            if not startable and not running:
                raise RuntimeError(f"jobs {left} wait for records that no job produces")
            for name in startable:
                left.remove(name)
                args = (fn, jobs[name], extra_of(name), store.path(name), store.fingerprint, threads)
                if pool is None:
                    bar.set_postfix_str(name[:40])
                    done[name] = _work(*args)
                    bar.update()
                    break                       # re-check readiness after every job run here
                running[pool.submit(_work, *args)] = name
            if running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    name = running.pop(f)
                    done[name] = f.result()     # re-raises a worker's error
                    bar.update()
                    bar.set_postfix_str(f"done {name}"[:40])
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return done


def ranks_of_torchrun() -> tuple[int, int] | None:
    """(rank, W) when this process is one of W > 1 ranks of ``torchrun`` (joining its process group);
    None otherwise."""
    from ..drivers.distributed import current
    mb = current()
    return (mb.rank, mb.world) if mb.distributed else None


def is_main() -> bool:
    """Whether this process writes a reproduction's summary (rank 0 under torchrun; always otherwise)."""
    r = ranks_of_torchrun()
    return r is None or r[0] == 0


def barrier() -> None:
    """Wait for every rank (nothing outside torchrun)."""
    if ranks_of_torchrun() is not None:
        import torch.distributed as dist
        dist.barrier()


def share(items: Sequence[_T]) -> list[_T]:
    """This rank's share of ``items`` (every W-th, from its rank) under torchrun; all of them otherwise."""
    r = ranks_of_torchrun()
    return list(items) if r is None else list(items)[r[0]::r[1]]


def _run_jobs_over_ranks(jobs: Mapping[str, Any], fn: Callable[..., dict[str, Any]], store: JobStore,
                         ranks: tuple[int, int], *, threads: int, quiet: bool,
                         ready: Callable[[str, dict[str, dict[str, Any]]], Any] | None) -> dict[str, dict[str, Any]]:
    rank, world = ranks

    def on_disk() -> dict[str, dict[str, Any]]:
        return {n: r for n in jobs if (r := store.load(n)) is not None}
    import torch.distributed as dist

    def decided() -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Rank 0 reads the disk and decides the round for everyone (ranks reading it themselves could
        see different files while a fast rank writes, and split the jobs differently)."""
        box: list[Any] = [None]
        if rank == 0:
            done0 = on_disk()
            box = [(done0, [n for n in jobs if n not in done0 and (ready is None or ready(n, done0) is not False)])]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    done, left = decided()
    while len(done) < len(jobs):
        if not left:
            raise RuntimeError(f"jobs {[n for n in jobs if n not in done]} wait for records that no job produces")
        for name in left[rank::world]:
            if not quiet:
                print(f"rank {rank}: {name}", flush=True)
            _work(fn, jobs[name], None if ready is None else ready(name, done), store.path(name), store.fingerprint,
                  threads)
        barrier()
        done, left = decided()
    return done


# ---- statistics ---------------------------------------------------------------------------------------
# two-sided 95% Student t quantiles t_{0.975, df}, df = 1..30 (standard tables)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% CI of the mean with Student's t; nan for one value)."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    return m, t * statistics.stdev(v) / math.sqrt(len(v))


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """The paired-seed difference a − b: mean, 95% CI half-width, and whether the CI excludes 0."""
    d = [x - y for x, y in zip(a, b)]
    m, h = ci95(d)
    sig = len(d) > 1 and math.isfinite(h) and abs(m) > h
    return {"diff": d, "mean": m, "ci95": h, "significant": sig,
            "verdict": ("ours better" if m > 0 else "ours worse") if sig else "not significant"}
