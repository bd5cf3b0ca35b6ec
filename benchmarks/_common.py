"""Shared measurement code for the benchmark scripts (not part of the library).

* :func:`setup` pins torch to one thread (``--threads`` to change) so that timings repeat;
* :func:`time_interleaved` takes the median wall time of repeated runs, running the implementations
  round-robin so that slow drifts of the machine hit all of them alike (retrying a sample taken while
  other processes loaded the machine); :func:`paired_ratio` compares two implementations round by
  round;
* :class:`SavedBytes` records what autograd saves for backward (``saved_tensors_hooks``), deduplicated
  by storage, both in total and at its peak of live bytes: an allocator-independent memory figure;
* :func:`peak_rss` runs one cell in a fresh Python process with ``MALLOC_MMAP_THRESHOLD_=16384`` and
  returns VmHWM minus VmRSS before the call (the peak is reset through ``/proc/self/clear_refs``);
  the child side is :func:`cell_main`;
* :func:`digits` loads scikit-learn's digits as fixed training batches and a validation batch;
* :func:`goal`, :func:`table`, :func:`write_json`, :func:`machine` for the report.

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
import subprocess
import sys
import time
from typing import Callable, Mapping

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "16384"}


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


# ---- saved tensors ----------------------------------------------------------------------------------
class _Packed:
    __slots__ = ("tensor", "key", "owner")

    def __init__(self, tensor, key, owner):
        self.tensor, self.key, self.owner = tensor, key, owner

    def __del__(self):
        self.owner._release(self.key)


class SavedBytes:
    """Context manager: bytes autograd saves for backward, deduplicated by storage.

    ``total``: every storage ever saved (the whole graph when nothing is freed before the end);
    ``peak``: the most bytes held by live saved tensors at any moment (a graph freed by its backward
    pass releases its bytes). Parameters and inputs that autograd saves count like anything else."""

    def __init__(self):
        self.live: dict = {}
        self.seen: set = set()
        self.current = self.peak = self.total = 0
        self.count = 0

    def _pack(self, t):
        if t.layout != torch.strided or t.device.type == "meta":
            return t
        st = t.untyped_storage()
        key = (st.data_ptr(), st.nbytes())
        n, b = self.live.get(key, (0, st.nbytes()))
        if n == 0:
            self.current += b
            self.peak = max(self.peak, self.current)
        if key not in self.seen:
            self.seen.add(key)
            self.total += b
        self.live[key] = (n + 1, b)
        self.count += 1
        return _Packed(t, key, self)

    def _release(self, key):
        n, b = self.live[key]
        if n == 1:
            del self.live[key]
            self.current -= b
        else:
            self.live[key] = (n - 1, b)

    @staticmethod
    def _unpack(p):
        return p.tensor if isinstance(p, _Packed) else p

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def saved_bytes(fn: Callable[[], object]) -> dict:
    """Run ``fn`` once under :class:`SavedBytes`; returns peak/total bytes and the number of saves."""
    gc.collect()
    with SavedBytes() as s:
        out = fn()
    del out
    gc.collect()
    return {"peak": s.peak, "total": s.total, "saves": s.count}


# ---- peak RSS in a fresh process ------------------------------------------------------------------
def _status() -> dict:
    with open("/proc/self/status") as f:
        s = f.read()
    return {k: int(re.search(k + r":\s+(\d+)", s).group(1)) * 1024 for k in ("VmHWM", "VmRSS")}


def peak_rss(script: str, spec: Mapping, threads: int = 1, timeout: float = 600) -> dict | None:
    """Run ``python script --cell JSON`` in a fresh process (glibc's mmap threshold pinned) and
    return its measurement: {"peak": bytes above the RSS just before the call, "baseline": bytes}.
    None when the child fails (its stderr is printed)."""
    env = {**os.environ, **MMAP_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, script, "--cell", json.dumps(dict(spec)), "--threads", str(threads)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.stderr.write(f"cell {dict(spec)} failed:\n{r.stderr[-2000:]}\n")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def cell_main(build: Callable[[dict], tuple[Callable, Callable]], args) -> None:
    """Child side of :func:`peak_rss`. ``build(spec)`` sets up and returns (run, warm): ``warm`` is
    called first (lazy initialisation, allocator warm-up); then the RSS is read, the peak reset and
    ``run`` measured."""
    setup(args.threads)
    spec = json.loads(args.cell)
    run, warm = build(spec)
    warm()
    gc.collect()
    before = _status()["VmRSS"]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    out = run()
    hwm = _status()["VmHWM"]
    del out
    print(json.dumps({"peak": hwm - before, "baseline": before, "hwm_reset": reset}))


# ---- models and data --------------------------------------------------------------------------------
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



def _digits_arrays():
    """(X, y) of scikit-learn's digits, cached in the temp folder so that the fresh processes of
    :func:`peak_rss` need not import scikit-learn (seconds per process)."""
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "hypergradient-bench-digits.pt")
    if os.path.exists(path):
        try:
            d = torch.load(path)
            return d["X"], d["y"]
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt
            pass
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = torch.as_tensor(d.data, dtype=torch.float64), torch.as_tensor(d.target, dtype=torch.long)
    tmp = f"{path}.{os.getpid()}"
    torch.save({"X": X, "y": y}, tmp)
    os.replace(tmp, path)
    return X, y


def digits(batch: int = 128, n_batches: int = 10, dtype=torch.float32, seed: int = 0):
    """scikit-learn's digits (8×8, 10 classes), pixels scaled to [0, 1], shuffled with ``seed``:
    ``n_batches`` training batches of ``batch`` examples (cycled by every implementation in the
    same order) and the remaining examples as one validation batch."""
    X, y = _digits_arrays()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)
    X = X.to(dtype)[idx] / 16.0
    y = y[idx]
    n = batch * n_batches
    if n >= len(y):
        raise ValueError(f"{n_batches} batches of {batch} leave no validation data")
    train = [(X[i:i + batch].contiguous(), y[i:i + batch].contiguous()) for i in range(0, n, batch)]
    return train, (X[n:].contiguous(), y[n:].contiguous())


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
