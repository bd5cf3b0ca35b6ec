"""Data-parallel meta-batches over ``torch.distributed`` (ALGORITHMS.md §11; DESIGN.md: launched by
``torchrun``, gloo on CPU, nccl on GPU).

Every rank draws the same meta-batch of B tasks from the same generator and keeps tasks b ≡ rank
(mod W); a task's randomness depends on (seed, iteration, b), never on the rank. The per-task values a
driver averages over the meta-batch — hypergradients (once per outer step: per meta-iteration offline,
per inner step online), the initialization update's weights or gradients, the query losses — go
through one :class:`MetaBatch`:

* ``mode="sum"``: each rank sums its tasks' values into one flat buffer (plus how many it used); one
  ``all_reduce(SUM)``; the sum is divided by the global count (B, less the tasks a policy skipped),
  never by W. Equal to one process up to the order of the floating-point sum (≤ 1e-10 relative in
  float64).
* ``mode="gather"``: every per-task buffer is gathered and summed in task order, as one process sums:
  bit-identical to one process.

Decisions are taken after the collective, so every rank takes the same one: a non-finite mean, an
outer step skipped, the number of tasks used. An exception on one rank reaches every rank: the
collective carries a failure flag, and the other ranks raise :class:`RankFailed` instead of waiting
(the failing rank re-raises its own error). Without ``torch.distributed`` initialized (and outside
``torchrun``) :func:`current` returns the single-process :class:`MetaBatch` (W = 1), whose means
are exactly the sequential ones.

    torchrun --standalone --nproc_per_node=2 -m hypergradient reproduce sinusoid --quick
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 my_meta_script.py
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Any, Mapping, Sequence, cast

import torch

from ..core.types import Hparams

__all__ = ["MetaBatch", "RankFailed", "current", "init_from_env", "MODES", "TIMEOUT"]

MODES = ("sum", "gather")
TIMEOUT = datetime.timedelta(minutes=10)   # gloo's collective timeout when we create the process group


class RankFailed(RuntimeError):
    """Another rank raised; this one stops too (instead of waiting for it in the next collective)."""


def _dist() -> Any:
    import torch.distributed as dist
    return dist


def init_from_env(backend: str | None = None, timeout: datetime.timedelta = TIMEOUT) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1) with gloo (the
    meta-batch's buffers are small CPU tensors; an nccl path has not been run on a GPU here) and
    ``timeout``; True when a group is (now) initialized."""
    dist = _dist()
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend=backend or "gloo", timeout=timeout)
    import atexit
    atexit.register(_leave)         # a process that exits with the group alive aborts in gloo's threads
    return True


def _leave() -> None:
    dist = _dist()
    if dist.is_initialized():
        dist.destroy_process_group()


class MetaBatch:
    """How a meta-batch's per-task values become their mean, in this process or over the ranks.

    ``tasks(B)`` are this rank's task indices; ``mean`` / ``mean_tensors`` take (task index, value)
    pairs of this rank's tasks and return the mean over every rank's (None when no rank gave any)."""

    def __init__(self, rank: int = 0, world: int = 1, mode: str = "sum", group: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        self.rank, self.world, self.mode, self.group = rank, world, mode, group

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this rank logs, shows progress and writes checkpoints (rank 0)."""
        return self.rank == 0

    def tasks(self, B: int) -> list[int]:
        """This rank's tasks of a meta-batch of B: b ≡ rank (mod W). B < W is refused."""
        if B < self.world:
            raise ValueError(f"a meta-batch of {B} tasks cannot be spread over {self.world} ranks (each rank needs a "
                             f"task): use meta_batch >= {self.world}, or fewer processes (--nproc_per_node)")
        return list(range(self.rank, B, self.world))

    # ---- the collectives ------------------------------------------------------------------------------
    def _reduce(self, buf: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if not self.distributed:
            return buf
        dist = _dist()
        dist.all_reduce(buf, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=self.group)
        return buf

    def check(self, failed: BaseException | None) -> None:
        """A collective on the failure flag alone: every rank raises when one of them failed."""
        flag = self._reduce(torch.tensor([0.0 if failed is None else 1.0 + self.rank], dtype=torch.float64), "max")
        self._raise(failed, flag.item())

    def _sum_mode(self, local: Sequence[tuple[int, torch.Tensor]], size: int, failed: BaseException | None
                  ) -> tuple[torch.Tensor | None, int]:
        """(Σ over every rank's flat values / n, n) by one all-reduce of a float64 buffer (plus the count
        and the failure flag); (None, 0) when no rank has a value."""
        buf = torch.zeros(size + 2, dtype=torch.float64)   # float64 on the wire: float32 sums stay exact in it
        if local and failed is None:
            total = local[0][1].detach().clone()
            for _, v in local[1:]:
                total = total + v.detach()
            buf[:size] = total.to(torch.float64)
        buf[size] = float(len(local))
        buf[size + 1] = 0.0 if failed is None else 1.0
        self._reduce(buf)
        self._raise(failed, buf[size + 1].item())
        n = int(round(buf[size].item()))
        return (None, 0) if n == 0 else (buf[:size] / n, n)

    def _gathered(self, local: Sequence[tuple[int, torch.Tensor]], size: int, failed: BaseException | None
                  ) -> list[torch.Tensor]:
        """Every rank's flat values (as float64 rows: float32 round-trips exactly), in task order."""
        dist = _dist()
        counts = [torch.zeros(2, dtype=torch.float64) for _ in range(self.world)]
        dist.all_gather(counts, torch.tensor([float(len(local)), 0.0 if failed is None else 1.0],
                                             dtype=torch.float64), group=self.group)
        self._raise(failed, max(c[1].item() for c in counts))
        most = max(int(c[0].item()) for c in counts)
        rows = torch.zeros(max(most, 1), size + 1, dtype=torch.float64)
        for i, (b, v) in enumerate(local):
            rows[i, :size] = v.detach().to(torch.float64)
            rows[i, size] = float(b)
        got = [torch.zeros_like(rows) for _ in range(self.world)]
        dist.all_gather(got, rows, group=self.group)
        items = sorted(((int(g[i, size].item()), g[i, :size]) for g, c in zip(got, counts)
                        for i in range(int(c[0].item()))), key=lambda x: x[0])
        return [v for _, v in items]

    def _raise(self, failed: BaseException | None, flag: float) -> None:
        if failed is not None:
            raise failed
        if flag > 0:
            raise RankFailed(f"another rank raised during this meta-batch step; rank {self.rank} stops too (see "
                             "that rank's error)")

    def mean_tensors(self, local: Sequence[tuple[int, Sequence[torch.Tensor]]], like: Sequence[torch.Tensor],
                     failed: BaseException | None = None) -> tuple[list[torch.Tensor] | None, int]:
        """(mean, n) over every rank's tasks of lists of tensors shaped (and typed) like ``like`` — one
        flat buffer, one collective; (None, 0) when no rank has a value. In gather mode the per-task
        values are summed part by part in task order in their own dtype, as one process sums."""
        def split(flat: torch.Tensor) -> list[torch.Tensor]:
            parts, o = [], 0
            for t in like:
                parts.append(flat[o:o + t.numel()].reshape(t.shape).to(device=t.device, dtype=t.dtype))
                o += t.numel()
            return parts
        if not self.distributed:
            if failed is not None:
                raise failed
            ordered = [list(ts) for _, ts in sorted(local, key=lambda x: x[0])]
        else:
            size = sum(int(t.numel()) for t in like)
            flat = [(b, torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in ts])) for b, ts in local]
            if self.mode == "sum":
                out, n = self._sum_mode(flat, size, failed)
                return (None, 0) if out is None else (split(out), n)
            ordered = [split(row) for row in self._gathered(flat, size, failed)]
        if not ordered:
            return None, 0
        return [cast(torch.Tensor, _ordered_mean([ts[i] for ts in ordered])[0]) for i in range(len(like))], len(ordered)

    def mean(self, local: Sequence[tuple[int, Mapping[str, torch.Tensor]]], like: Mapping[str, torch.Tensor],
             failed: BaseException | None = None
             ) -> tuple[Hparams | None, int]:
        """(mean, n) over every rank's tasks of dicts shaped like ``like`` (λ); (None, 0): no values."""
        keys = list(like)
        parts, n = self.mean_tensors([(b, [v[k] for k in keys]) for b, v in local], [like[k] for k in keys], failed)
        return (None, 0) if parts is None else (dict(zip(keys, parts)), n)

    def mean_floats(self, local: Sequence[tuple[int, float]]) -> float:
        """The mean over every rank's (task, number) pairs — logged means such as the query loss —
        by the same collective as the hypergradients (in gather mode: in task order, as one process);
        nan when there are none."""
        mean, _ = self.mean_tensors([(b, [torch.tensor(float(v), dtype=torch.float64)]) for b, v in local],
                                    [torch.zeros((), dtype=torch.float64)])
        return math.nan if mean is None else float(mean[0])

    def sum_counts(self, counts: Sequence[int]) -> list[int]:
        """Integer counters summed over the ranks (the cost of a meta-iteration)."""
        buf = self._reduce(torch.tensor([float(c) for c in counts], dtype=torch.float64))
        return [int(round(x)) for x in buf.tolist()]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        _dist().all_gather_object(out, obj, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a checkpoint read on rank 0)."""
        if not self.distributed:
            return obj
        box = [obj]
        _dist().broadcast_object_list(box, src=0, group=self.group)
        return box[0]


def _ordered_mean(values: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, int]:
    """(Σ v / n, n) summed in the order given, as :func:`~hypergradient.drivers.online.mean_value` sums."""
    if not values:
        return None, 0
    total = values[0].detach().clone()
    for v in values[1:]:
        total = total + v.detach()
    return total / len(values), len(values)


def current(mode: str = "sum", group: Any = None) -> MetaBatch:
    """The :class:`MetaBatch` of this process: over the initialized process group (joining the one
    ``torchrun`` describes, :func:`init_from_env`), else the single process."""
    if init_from_env():
        dist = _dist()
        return MetaBatch(dist.get_rank(group), dist.get_world_size(group), mode, group)
    return MetaBatch(0, 1, mode, group)
