"""A distributed meta-training case for the tests (and for trying ``torchrun`` by hand): float64 sinusoid
ANIL meta-trained by :func:`~hypergradient.drivers.meta_train`, run in this process or in W spawned
processes joined by gloo over a file rendezvous (no ports). Each rank writes what it ended with, so a
test compares ranks with each other and with one process.

    python -m hypergradient.testing.distributed      # under torchrun: one case, rank 0 prints λ's norm
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
from typing import Any

import torch

from ..drivers.meta import Task, TaskSampler

__all__ = ["CASE", "run_case", "spawn"]

CASE: dict[str, Any] = {"estimator": "rmd", "options": {}, "init_update": "reptile", "B": 4, "iterations": 3,
                        "T": 5, "gather": False, "wild": None, "divergence": "raise", "checkpoint": None,
                        "interrupt_after": None, "seed": 0, "poison": None}


class _Wild(TaskSampler):
    """A sampler whose ``wild``-th draw (counted over the run) has its support inputs scaled by 100: its
    inner loop diverges (finite losses growing past the divergence rule's factor); its ``poison``-th
    draw has NaN inputs."""

    def __init__(self, base: Any, wild: int | None, poison: int | None = None) -> None:
        self.base, self.wild, self.poison, self.n = base, wild, poison, 0

    def sample(self, generator: torch.Generator) -> Task:
        task = self.base.sample(generator)
        if self.n == self.wild:
            x, y = task.support
            task = dataclasses.replace(task, support=(100 * x, y), info={**task.info, "wild": True})
        if self.n == self.poison:            # a NaN input: the pre-flight checks refuse this task
            x, y = task.support
            task = dataclasses.replace(task, support=(x * float("nan"), y))
        self.n += 1
        return task


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Meta-train the case in this process (over the process group, when one is initialized). Returns
    λ, φ, the history and the cost — or the error it ended with."""
    from ..drivers import meta_train
    from ..learners import ANIL, SinusoidTasks, anil_mlp
    c = {**CASE, **case}
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)    # the initial weights are drawn in the default dtype
    try:
        learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.ReLU), horizon=c["T"])
    finally:
        torch.set_default_dtype(old)
    lam = learner.init_hparams()
    outer = torch.optim.Adam(list(lam.values()), lr=0.01)
    sampler = _Wild(SinusoidTasks(dtype=torch.float64), c["wild"], c["poison"])

    def stop(it: Any) -> None:
        if c["interrupt_after"] is not None and it.iteration + 1 == c["interrupt_after"]:
            raise KeyboardInterrupt
    try:
        res = meta_train(learner, c["estimator"], lam, outer, sampler, iterations=c["iterations"], meta_batch=c["B"],
                         T=c["T"], init_update=c["init_update"], seed=c["seed"], gather=c["gather"],
                         divergence=c["divergence"], checkpoint=c["checkpoint"], callback=stop, progress=False,
                         **c["options"])
    except KeyboardInterrupt:
        return {"interrupted": True}
    except Exception as e:      # noqa: BLE001 - the test reads which error each rank ended with
        return {"error": type(e).__name__, "message": str(e)}
    return {"lam": {k: v.detach().clone() for k, v in res.hparams.items()},
            "phi": {k: v.detach().clone() for k, v in res.init.items()},
            "meta_val_loss": list(res.history["meta_val_loss"]), "val_loss": list(res.history["val_loss"]),
            "divergence": res.history.get("divergence", []), "cost": dataclasses.asdict(res.cost)}


def _worker(rank: int, world: int, rendezvous: str, case: dict[str, Any], out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        result = run_case(case)
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()              # nobody leaves while another rank still talks to it
    finally:
        dist.destroy_process_group()


def spawn(world: int, case: dict[str, Any], tmp: str) -> list[dict[str, Any]]:
    """Run ``case`` on ``world`` spawned processes (gloo, file rendezvous in ``tmp``); every rank's result."""
    import torch.multiprocessing as mp
    import uuid
    os.makedirs(tmp, exist_ok=True)
    rendezvous = os.path.join(tmp, f"rendezvous-{uuid.uuid4().hex}")      # a fresh file: never a stale group
    for r in range(world):
        if os.path.exists(os.path.join(tmp, f"rank{r}.pt")):
            os.remove(os.path.join(tmp, f"rank{r}.pt"))
    mp.spawn(_worker, args=(world, rendezvous, case, tmp), nprocs=world, join=True)
    return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world)]


if __name__ == "__main__":      # under torchrun: python -m hypergradient.testing.distributed
    from ..drivers.distributed import current
    got = run_case({"estimator": sys.argv[1] if len(sys.argv) > 1 else "rmd"})
    mb = current()
    if "error" in got:
        print(f"rank {mb.rank}: {got['error']}: {got['message']}", file=sys.stderr)
        sys.exit(1)
    if mb.main:
        norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in got["lam"].values())))
        print(f"world {mb.world}: |λ| = {norm:.12f}, query loss {got['meta_val_loss'][-1]:.12f}")
