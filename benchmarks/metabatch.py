"""Meta-batch throughput: sinusoid ANIL meta-training in tasks per second, sequential vs vectorized vs 2 ranks.

Task: HyperDistill's sinusoid setting (App. G): ANIL on a 1-100-100-100-1 ReLU MLP (the hidden layers
are λ, the last layer the inner weights), inner SGD lr 0.01, momentum 0.9, T = 30 (10 with --quick),
Reptile on the initialization, Adam 1e-3 on λ; estimators ``rmd`` (offline, one outer step per
meta-iteration) and ``one_step`` (online, λ updated at every inner step). For each meta-batch size
B ∈ {4, 10, 32}: ``meta_train`` for a few meta-iterations

* sequential: the B tasks one after another, 1 thread;
* vectorized: ``meta_train(vectorize=True)``, the B tasks as one batched inner loop, 1 thread;
* 2 ranks: two processes joined by gloo (file rendezvous), 1 thread each, tasks b ≡ rank (mod 2).

Throughput = B · iterations / seconds (the slowest rank's, for 2 ranks), best of ``repeats``; every
configuration first runs one warm-up iteration. Results agree with the sequential run (checked:
λ's largest relative difference is reported).

Goals (issue 19): vectorized ≥ 4× sequential at B = 10 (as seconds per task: ≤ 0.25×); 2 ranks of 1
thread ≥ 1.7× 1 rank at B = 10 (≤ 0.588×).

Run: ``python benchmarks/metabatch.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

from hypergradient.drivers import meta_train  # noqa: E402
from hypergradient.learners import ANIL, SinusoidTasks, anil_mlp  # noqa: E402

ESTIMATORS = ("rmd", "one_step")


def _run(est: str, B: int, T: int, iterations: int, vectorize: bool = False) -> tuple[float, dict]:
    """(seconds, λ) of ``iterations`` meta-iterations after one warm-up iteration (same seeds every call)."""
    torch.manual_seed(0)
    learner = ANIL(anil_mlp((1, 100, 100, 100, 1)), horizon=T)
    lam = learner.init_hparams()
    outer = torch.optim.Adam(list(lam.values()), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(meta_batch=B, T=T, init_update="reptile", progress=False, vectorize=vectorize, seed=0)
        meta_train(learner, est, lam, outer, SinusoidTasks(), iterations=1, **kw)
        t0 = time.perf_counter()
        meta_train(learner, est, lam, outer, SinusoidTasks(), iterations=iterations, **kw)
        sec = time.perf_counter() - t0
    return sec, {k: v.detach().clone() for k, v in lam.items()}


def _rank(rank: int, world: int, rendezvous: str, out: str, est: str, B: int, T: int, iterations: int) -> None:
    import datetime
    import torch.distributed as dist
    C.setup(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        sec, lam = _run(est, B, T, iterations)
        torch.save({"seconds": sec, "lam": lam}, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def two_ranks(est: str, B: int, T: int, iterations: int) -> tuple[float, dict]:
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, os.path.join(tmp, "rdzv"), tmp, est, B, T, iterations), nprocs=2, join=True)
        got = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]
    return max(g["seconds"] for g in got), got[0]["lam"]


def rel(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)) for k in a)


def main(argv=None):
    args = C.parser(__doc__.splitlines()[0]).parse_args(argv)
    C.setup(1)
    T, iterations, repeats, sizes = (10, 2, 1, (4, 10)) if args.quick else (30, 3, 2, (4, 10, 32))
    rows, res = [], {}
    for est in ESTIMATORS:
        for B in sizes:
            best: dict[str, float] = {}
            lams: dict[str, dict] = {}
            for _ in range(repeats):          # configurations interleaved, best of repeats
                for mode in ("sequential", "vectorized", "2 ranks"):
                    if mode == "2 ranks":
                        sec, lam = two_ranks(est, B, T, iterations)
                    else:
                        sec, lam = _run(est, B, T, iterations, vectorize=mode == "vectorized")
                    best[mode] = min(best.get(mode, float("inf")), sec)
                    lams[mode] = lam
            tput = {m: B * iterations / s for m, s in best.items()}
            r = {"estimator": est, "B": B, **{f"{m} tasks/s": v for m, v in tput.items()},
                 "vectorized ×": tput["vectorized"] / tput["sequential"], "2 ranks ×": tput["2 ranks"] / tput["sequential"],
                 "vectorized λ rel. diff": rel(lams["sequential"], lams["vectorized"]),
                 "2 ranks λ rel. diff": rel(lams["sequential"], lams["2 ranks"])}
            rows.append(r)
            res[f"{est}/B{B}"] = {"seconds": best, "tasks_per_second": tput, **{k: r[k] for k in r if "diff" in k}}
            print(f"{est:9s} B={B:3d}  " + "  ".join(f"{m} {v:8.1f} tasks/s" for m, v in tput.items()), flush=True)
    at10 = next(r for r in rows if r["estimator"] == "rmd" and r["B"] == 10)
    goals = [C.goal("vectorized seconds per task ÷ sequential, rmd, B = 10 (≥ 4× throughput)",
                    1 / at10["vectorized ×"], 0.25, f"throughput ×{at10['vectorized ×']:.2f}"),
             C.goal("2 ranks (1 thread each) seconds per task ÷ 1 rank, rmd, B = 10 (≥ 1.7× throughput)",
                    1 / at10["2 ranks ×"], 1 / 1.7, f"throughput ×{at10['2 ranks ×']:.2f}")]
    text = C.table(rows, list(rows[0]), f"metabatch: sinusoid ANIL meta-training, T = {T}, {iterations} meta-iterations") \
        + "\n" + C.goals_table(goals)
    print()
    print(text)
    C.write_json(args.json, {"benchmark": "metabatch", "quick": args.quick, "machine": C.machine(1),
                             "settings": {"model": [1, 100, 100, 100, 1], "T": T, "iterations": iterations,
                                          "repeats": repeats, "sizes": list(sizes), "estimators": list(ESTIMATORS)},
                             "goals": goals, "results": res})


if __name__ == "__main__":
    main()
