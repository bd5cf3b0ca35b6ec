"""Per-parameter learning rates: one learning rate for every weight of an MLP, learned by exact reverse mode.

The inner problem trains a 64-32-10 MLP on scikit-learn's digits with SGD (momentum 0.9) for T steps;
λ holds one learning rate per weight entry (``Hyper(lr, "element", positive="exp")``, as Meta-SGD does),
about 2,400 hyperparameters. Each outer step differentiates the validation loss after the T steps with
respect to all of them at once (``"rmd"``: exact reverse mode through the unroll) and takes an Adam step.
The script prints the validation loss and accuracy of a fresh training run with the initial and with the
learned learning rates, and how the learned rates spread inside each tensor.

    python examples/per_parameter_lr.py            # T = 100, 40 outer steps
    python examples/per_parameter_lr.py --quick    # T = 40, 15 outer steps (seconds)
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


def digits_splits(seed: int):
    """Pixels scaled to [0, 1], shuffled by ``seed``: 1,000 training and 400 validation images."""
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X, dtype=torch.float32) / 16, torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    X, y = X[perm], y[perm]
    return (X[:1000], y[:1000]), (X[1000:1400], y[1000:1400])


def ce(f, batch, hp):
    """The training and validation loss: ``f`` runs the model at the inner weights."""
    return F.cross_entropy(f(batch[0]), batch[1])


def trained(problem, lam, T):
    """Train T steps from the same initial weights with λ and get the network back as the user's own
    module (``problem.module_at``); its (validation loss, validation accuracy)."""
    model = problem.module_at(problem.final_state(lam, T))       # an nn.Sequential like the one given
    X, y = problem.data.val
    with torch.no_grad():
        logits = model(X)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (T = 40, 15 outer steps)")
    p.add_argument("--T", type=int, default=None, help="inner steps (default 100, quick 40)")
    p.add_argument("--outer-steps", type=int, default=None, help="outer steps (default 40, quick 15)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate of every weight")
    p.add_argument("--seed", type=int, default=0, help="data, batches and initial weights")
    args = p.parse_args(argv)
    T = args.T or (40 if args.quick else 100)
    steps = args.outer_steps or (15 if args.quick else 40)

    torch.manual_seed(args.seed)
    (X, y), val = digits_splits(args.seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    batches = [(X[i:i + 100], y[i:i + 100]) for i in range(0, len(y), 100)]      # cycled over the T steps
    sgd = hg.optim.sgd(lr=Hyper(args.lr, "element", positive="exp"), momentum=0.9)  # one lr per weight entry
    problem = hg.InnerProblem(model, ce, ce, sgd, data=hg.Data(batches, val), horizon=T)
    lam = problem.init_hparams()
    n = sum(v.numel() for v in lam.values())

    before = trained(problem, lam, T)
    t0 = time.perf_counter()
    res = hg.run_offline(problem, "rmd", lam, torch.optim.Adam(lam.values(), lr=0.05), steps=steps, progress=False)
    seconds = time.perf_counter() - t0
    after = trained(problem, lam, T)

    print(f"{n} learning rates, exact RMD through T={T} steps, {steps} outer steps in {seconds:.1f}s")
    print(f"validation loss {before[0]:.4f} -> {after[0]:.4f}   accuracy {before[1]:.3f} -> {after[1]:.3f}")
    lrs = problem.learned(lam)["lr"]                 # weight name -> its learning rates, the weight's shape
    spread = {}
    for name, v in lrs.items():
        spread[name] = (v.min().item(), v.median().item(), v.max().item())
        print(f"  lr of {name:<9} min {spread[name][0]:.4f}  median {spread[name][1]:.4f}  max {spread[name][2]:.4f}")
    return {"n_hparams": n, "T": T, "outer_steps": steps, "seconds": seconds,
            "val_loss_before": before[0], "val_loss_after": after[0],
            "val_acc_before": before[1], "val_acc_after": after[1],
            "val_loss_history": res.history["val_loss"], "lr_spread": spread}


if __name__ == "__main__":
    main()
