"""Long-horizon schedules with forward mode: a learning-rate and momentum schedule learned through 1,000
inner steps, in memory that does not grow with the horizon.

The non-greedy paper's setting (Micaelli & Storkey 2021, Section 4), scaled down: an MLP on
scikit-learn's digits trained by SGD for T steps; the learning rate and the momentum are each a
schedule of K = 10 values shared over contiguous windows of T / K steps (``Hyper(..., schedule=10)``),
so 20 hyperparameters. Reverse mode would store (or recompute) all T states; forward mode (``"fmd"``)
carries the tangent dS/dλ — 20 columns — along the run instead, its memory constant in T. The outer
optimizer is Adam on the raw values (the lr through ``positive="exp"``; the momentum clipped to
[0, 0.99] by ``bounds=`` with ``enforce="clip"``: unbounded, the outer steps push it past 1). The script prints the validation loss
with the initial constant schedule and with the learned one (both retrained from the same s_0), the
learned schedules (``problem.learned(lam)``), and with ``--plot FILE`` draws them.

    python examples/lr_schedule_fmd.py            # T = 1000, 30 outer steps (minutes)
    python examples/lr_schedule_fmd.py --quick    # T = 100, 6 outer steps (seconds)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import hypergradient as hg
from hypergradient import Hyper


def ce(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (T = 100, 6 outer steps)")
    p.add_argument("--T", type=int, default=None, help="inner steps (default 1000, quick 100)")
    p.add_argument("--K", type=int, default=10, help="values per schedule (shared windows of T / K steps)")
    p.add_argument("--outer-steps", type=int, default=None, help="outer steps (default 30, quick 6)")
    p.add_argument("--plot", default=None, help="draw the learned schedules to this PNG file")
    p.add_argument("--seed", type=int, default=0, help="data split, batches and initial weights")
    args = p.parse_args(argv)
    T = args.T or (100 if args.quick else 1000)
    steps = args.outer_steps or (6 if args.quick else 30)

    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X, dtype=torch.float32) / 16, torch.tensor(y)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(y), generator=g)
    X, y = X[perm], y[perm]
    train, val = (X[:1000], y[:1000]), (X[1000:1400], y[1000:1400])
    batches = [(train[0][i], train[1][i]) for i in (torch.randperm(1000, generator=g)[:64] for _ in range(T))]

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    sgd = hg.optim.sgd(lr=Hyper(0.02, positive="exp", schedule=args.K), momentum=Hyper(0.5, schedule=args.K, bounds=(0.0, 0.99), enforce="clip"))
    problem = hg.InnerProblem(model, ce, ce, sgd, data=hg.Data(batches, val), horizon=T)
    lam = problem.init_hparams()             # {"optim.lr": K raw values, "optim.momentum": K values}

    def val_loss() -> float:
        with torch.no_grad():
            return problem.val_loss_at(problem.final_state(lam), lam).item()

    before = val_loss()
    t0 = time.perf_counter()
    outer = torch.optim.Adam(lam.values(), lr=0.1)
    res = hg.run_offline(problem, "fmd", lam, outer, steps=steps, progress=False)   # forward mode, O(1) in T
    seconds = time.perf_counter() - t0
    after = val_loss()
    learned = problem.learned(lam)           # {"lr": [K floats], "momentum": [K floats], ...}

    print(f"{T} inner steps, schedules of {args.K} values, forward mode: {steps} outer steps in {seconds:.1f}s")
    print(f"validation loss {before:.4f} (constant lr 0.02, momentum 0.5) -> {after:.4f} (learned schedules)")
    print("learned lr:      ", " ".join(f"{v:.3f}" for v in learned["lr"]))
    print("learned momentum:", " ".join(f"{v:.3f}" for v in learned["momentum"]))
    if args.plot:
        hg.diagnostics.plot_schedules(problem, lam, args.plot)
        print(f"schedules drawn to {args.plot}")
    return {"T": T, "K": args.K, "outer_steps": steps, "seconds": seconds, "val_loss_before": before,
            "val_loss_after": after, "lr": learned["lr"], "momentum": learned["momentum"],
            "val_loss_history": res.history["val_loss"]}


if __name__ == "__main__":
    main()
