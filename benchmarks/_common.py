"""Shared measurement code for the benchmark scripts (not part of the library).

* :func:`setup` pins torch to one thread (``--threads`` to change) so that timings repeat;
* :func:`time_interleaved` takes the median wall time of repeated runs, running the implementations
  round-robin so that slow drifts of the machine hit all of them alike (retrying a sample taken while
  other processes loaded the machine); :func:`paired_ratio` compares two implementations round by
  round;
* :func:`peak_rss` / :func:`cell_main`: the benchmarks' protocol (``--cell JSON --threads N``) for one
  cell run in a fresh process, on top of the library's
  :func:`~hypergradient.diagnostics.memory.fresh_process_peak_rss` and
  :func:`~hypergradient.diagnostics.memory.measure_rss_peak` (peak RSS above the RSS before the call,
  ``MALLOC_MMAP_THRESHOLD_`` pinned by ``MMAP_ENV``);
* :func:`mlp`, the benchmark models;
* :func:`goal`, :func:`table`, :func:`write_json`, :func:`machine` for the report.

The memory meters and the data are the library's own, imported by the scripts directly: bytes autograd
saves from :func:`hypergradient.diagnostics.saved_bytes` (``SavedTensorMeter``), the digits batches
from :func:`hypergradient.learners.data.digits_batches`.

Every script is run as ``python benchmarks/NAME.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import re
import statistics
import time
from typing import Callable, Mapping

import torch

from hypergradient.diagnostics.memory import MMAP_ENV, fresh_process_peak_rss, measure_rss_peak

MMAP_THRESHOLD = int(MMAP_ENV["MALLOC_MMAP_THRESHOLD_"])  # bytes; recorded in each report's settings


# ---- set-up -----------------------------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a reduced grid that runs in under 2 minutes")
    p.add_argument("--json", metavar="FILE", help="write the measurements and goals as JSON to FILE")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak-RSS cells")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # child side of peak_rss
    return p


def setup(threads: int = 1) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (child processes re-enter)
        pass


def optional(name: str):
    """Import an optional peer (``higher``, ``torchopt``); None when it is absent or broken."""
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (cheap in fresh processes)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---- time -------------------------------------------------------------------------------------------
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine so far (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / _HZ  # user nice system irq softirq steal


def _sample(f) -> tuple[float, float | None]:
    """(wall seconds of f(), CPUs' worth of *other* processes' load meanwhile)."""
    gc.collect()
    b0, c0 = _busy_seconds(), time.process_time()
    t0 = time.perf_counter()
    f()
    wall = time.perf_counter() - t0
    b1, c1 = _busy_seconds(), time.process_time()
    if b0 is None or wall < 0.05:  # /proc/stat ticks are too coarse to judge short samples
        return wall, None
    return wall, max(0.0, (b1 - b0) - (c1 - c0)) / wall


def time_interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
                     max_load: float = 0.35, max_tries: int = 3) -> dict:
    """Median (and min, all samples) wall time in seconds of each callable, run round-robin.

    This machine is shared: a sample during which other processes kept more than ``max_load`` of a
    CPU busy (read from /proc/stat) is taken again, up to ``max_tries`` times; the load seen during
    every kept sample is returned beside it."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    samples = {k: [] for k in fns}
    loads = {k: [] for k in fns}
    retried = {k: 0 for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            for attempt in range(max_tries):
                w, l = _sample(f)
                if l is None or l <= max_load or attempt == max_tries - 1:
                    break
                retried[k] += 1
            samples[k].append(w)
            loads[k].append(l)
    return {k: {"median": statistics.median(v), "min": min(v), "samples": v, "load": loads[k],
                "retried": retried[k]} for k, v in samples.items()}


def paired_ratio(a: list, bs: list[list]) -> float | None:
    """Median over rounds of a[i] / b[i], b the one of ``bs`` with the smallest median (the fastest
    peer): samples taken back to back (``time_interleaved`` rounds) share the machine's state, so
    their ratio is steadier than a ratio of medians. (Not the per-round minimum over ``bs``: under
    noise the minimum of several samples is biased low against a single sample of ``a``.)"""
    bs = [b for b in bs if b]
    if not a or not bs:
        return None
    b = min(bs, key=statistics.median)
    n = min(len(a), len(b))
    return statistics.median(a[i] / b[i] for i in range(n))


# ---- peak RSS in a fresh process ------------------------------------------------------------------
def peak_rss(script: str, spec: Mapping, threads: int = 1, timeout: float = 600) -> dict | None:
    """``python script --cell JSON --threads N`` in a fresh process (:func:`fresh_process_peak_rss`):
    {"peak", "baseline", "hwm_reset"} as the child's :func:`cell_main` reports it, None if it fails."""
    argv = [script, "--cell", json.dumps(dict(spec)), "--threads", str(threads)]
    return fresh_process_peak_rss(argv, threads=threads, timeout=timeout)


def cell_main(build: Callable[[dict], tuple[Callable, Callable]], args) -> None:
    """Child side of :func:`peak_rss`: ``build(spec)`` sets up and returns (run, warm), measured by
    :func:`measure_rss_peak` (``warm`` first, then the peak of ``run``), which prints the result."""
    setup(args.threads)
    run, warm = build(json.loads(args.cell))
    measure_rss_peak(run, warm)


# ---- models -----------------------------------------------------------------------------------------
def mlp(dims, dtype=torch.float32, seed: int = 0):
    """A ReLU MLP with layer sizes ``dims``, initialised from ``torch.manual_seed(seed)``."""
    from torch import nn

    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(dtype)


# ---- report -----------------------------------------------------------------------------------------
def goal(name: str, measured: float | None, target: float, note: str = "") -> dict:
    """A goal "measured ≤ target"; ``measured`` None means it could not be measured here."""
    met = None if measured is None else bool(measured <= target)
    return {"name": name, "measured": measured, "target": target, "met": met, "note": note}


def machine(threads: int) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def mib(b) -> float | None:
    return None if b is None else b / 2 ** 20


def table(rows: list[dict], columns: list[str], title: str = "") -> str:
    """A GitHub-flavoured markdown table (also readable on a terminal)."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(columns)]
    out = [f"### {title}", ""] if title else []
    out.append("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(columns)) + " |")
    out.append("|" + "|".join("-" * (w[i] + 2) for i in range(len(columns))) + "|")
    for x in cells:
        out.append("| " + " | ".join(x[i].ljust(w[i]) for i in range(len(columns))) + " |")
    return "\n".join(out) + "\n"


def goals_table(goals: list[dict]) -> str:
    rows = [{"goal": g["name"], "measured": g["measured"], "target": f"≤ {g['target']}",
             "met": g["met"], "note": g.get("note", "")} for g in goals]
    return table(rows, ["goal", "measured", "target", "met", "note"], "Goals")


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)
        f.write("\n")
