"""Memory, one implementation per quantity (used by tests, benchmarks and reproductions):

* :class:`SavedTensorMeter` — bytes autograd saves for backward (``saved_tensors_hooks``),
  deduplicated by storage: the most held at once (``peak``) and every storage ever saved (``total``).
  An allocator-independent figure for memory claims.
* :class:`HeapMeter` / :func:`peak_heap_bytes` — the peak of glibc's in-use heap while a function runs,
  sampled after every ATen op (the CPU analogue of ``torch.cuda.max_memory_allocated``).
* :func:`fresh_process_peak_rss` / :func:`measure_rss_peak` — peak resident set size of one call in
  a fresh Python process with glibc's mmap threshold pinned (``MALLOC_MMAP_THRESHOLD_=16384``), the
  parent and the child side.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from typing import Any, Callable, Mapping, Sequence, cast

import torch

__all__ = ["SavedTensorMeter", "saved_bytes", "HeapMeter", "peak_heap_bytes", "MMAP_ENV", "rss_status",
           "fresh_process_peak_rss", "measure_rss_peak"]

MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "16384"}


# ---- bytes autograd saves -------------------------------------------------------------------------
class _Packed:
    """A saved tensor that tells its meter when autograd lets go of it. Held detached: keeping an op's
    output with its grad_fn would form a reference cycle through the graph, freed only by the garbage
    collector (autograd restores the grad_fn on unpacking)."""

    __slots__ = ("tensor", "key", "owner")

    def __init__(self, tensor: torch.Tensor, key: tuple[int, int], owner: SavedTensorMeter):
        self.tensor, self.key, self.owner = tensor, key, owner

    def __del__(self) -> None:
        self.owner._release(self.key)


class SavedTensorMeter:
    """``with SavedTensorMeter() as m: ...`` then ``m.peak``: the most bytes that autograd's saved
    tensors held at once inside the block, counting each storage once (views of one buffer share
    it); ``m.live`` is what is still held, ``m.total`` every storage ever saved (the whole graph when
    nothing is freed before the end), ``m.count`` the number of saves. Parameters and inputs that
    autograd saves count like anything else."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], tuple[int, int]] = {}
        self._seen: set[tuple[int, int]] = set()
        self.live = self.peak = self.total = self.count = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor | _Packed:
        if t.layout != torch.strided or t.device.type == "meta":
            return t
        st = t.untyped_storage()
        key = (st.data_ptr(), st.nbytes())
        n, b = self._held.get(key, (0, st.nbytes()))
        if n == 0:
            self.live += b
            self.peak = max(self.peak, self.live)
        if key not in self._seen:
            self._seen.add(key)
            self.total += b
        self._held[key] = (n + 1, b)
        self.count += 1
        return _Packed(t.detach(), key, self)

    def _release(self, key: tuple[int, int]) -> None:
        n, b = self._held[key]
        if n == 1:
            del self._held[key]
            self.live -= b
        else:
            self._held[key] = (n - 1, b)

    @staticmethod
    def _unpack(p: torch.Tensor | _Packed) -> torch.Tensor:
        return p.tensor if isinstance(p, _Packed) else p

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


def saved_bytes(fn: Callable[[], object]) -> dict[str, int]:
    """Run ``fn`` once under :class:`SavedTensorMeter`: {"peak", "total", "saves"}."""
    gc.collect()
    with SavedTensorMeter() as m:
        out = fn()
    del out
    gc.collect()
    return {"peak": m.peak, "total": m.total, "saves": m.count}


# ---- heap peak ------------------------------------------------------------------------------------
class HeapMeter:
    """Peak of glibc's in-use heap bytes (``mallinfo2``: uordblks + hblkhd) above its value at entry,
    sampled after every ATen op through a ``TorchDispatchMode`` (backward ops included). CPU tensors
    are malloc'd directly (no caching allocator), so this is the CPU analogue of
    ``torch.cuda.max_memory_allocated`` plus autograd's own nodes; temporaries freed inside one op
    are missed. ``peak`` is None where mallinfo2 is unavailable (not glibc ≥ 2.33)."""

    def __init__(self) -> None:
        import ctypes
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _Info
            self._info: Callable[[], Any] | None = libc.mallinfo2
        except (OSError, AttributeError):
            self._info = None
        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (),
                                   kwargs: Mapping[str, Any] | None = None) -> Any:
                out = func(*args, **(kwargs or {}))
                meter._sample()
                return out
        self._mode = _Mode()
        self.peak: int | None = None

    def _used(self) -> int:
        m = cast(Callable[[], Any], self._info)()  # only sampled where mallinfo2 exists
        return m.uordblks + m.hblkhd

    def _sample(self) -> None:
        self.peak = max(cast(int, self.peak), self._used() - self._base)  # 0 from __enter__ on

    def __enter__(self) -> HeapMeter:
        if self._info is not None:
            self._base, self.peak = self._used(), 0
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._info is not None:
            self._mode.__exit__(*exc)


def peak_heap_bytes(fn: Callable[[], object]) -> int | None:
    """Peak heap bytes in use while ``fn()`` runs, above the start (:class:`HeapMeter`)."""
    gc.collect()
    with HeapMeter() as meter:
        fn()
    return meter.peak


# ---- peak RSS in a fresh process ------------------------------------------------------------------
def rss_status() -> dict[str, int]:
    """{"VmHWM", "VmRSS"} of this process in bytes (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        s = f.read()
    # Linux always reports both fields
    return {k: int(cast(re.Match[str], re.search(k + r":\s+(\d+)", s)).group(1)) * 1024 for k in ("VmHWM", "VmRSS")}


def fresh_process_peak_rss(argv: Sequence[str], *, threads: int = 1, timeout: float = 600) -> dict[str, Any] | None:
    """Run ``python *argv`` in a fresh process with :data:`MMAP_ENV` and ``threads`` BLAS threads; the
    child reports with :func:`measure_rss_peak` and its last line of output is returned as a dict
    ({"peak": bytes above the RSS just before the call, "baseline", "hwm_reset"}). None when the
    child fails (its stderr is printed)."""
    env = {**os.environ, **MMAP_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.stderr.write(f"{' '.join(argv)} failed:\n{r.stderr[-2000:]}\n")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_rss_peak(run: Callable[[], object], warm: Callable[[], object] | None = None) -> dict[str, Any]:
    """Child side of :func:`fresh_process_peak_rss`: call ``warm`` (lazy initialisation, allocator
    warm-up), read the RSS, reset the peak through ``/proc/self/clear_refs`` and measure ``run``;
    prints and returns {"peak": VmHWM − RSS before, "baseline", "hwm_reset"}."""
    if warm is not None:
        warm()
    gc.collect()
    before = rss_status()["VmRSS"]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    out = run()
    hwm = rss_status()["VmHWM"]
    del out
    res = {"peak": hwm - before, "baseline": before, "hwm_reset": reset}
    print(json.dumps(res))
    return res
