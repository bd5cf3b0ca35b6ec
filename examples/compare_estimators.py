"""Which estimator is good enough on *your* problem? Every estimator against exact reverse mode.

An MLP on scikit-learn's digits trained by SGD with momentum for T steps; λ = one learning rate per
parameter tensor (``Hyper(..., "tensor", positive="exp")``) and a weight-decay coefficient per tensor
in the training loss. ``hg.compare`` runs each registered estimator once at λ and reports its cosine
to exact RMD, its norm ratio ‖g‖ / ‖g_rmd‖ (cosine alone hides an estimate 10× too small), the
fraction of entries whose sign agrees, its time, the bytes autograd saved at most, and the primitives it
spent. Estimators that cannot handle this problem (IFT and EvoGrad do not differentiate learning
rates) are rows that say why. ``--json`` and ``--plot`` save the rows and a bar plot.

The same from the command line, on this file's ``make_problem``::

    hypergradient compare examples/compare_estimators.py:make_problem --estimators rmd,fmd,one_step,drmad

    python examples/compare_estimators.py            # T = 50, every estimator (a minute)
    python examples/compare_estimators.py --quick    # T = 10, seconds
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import hypergradient as hg
from hypergradient import Hyper


def train_loss(f, batch, hp):
    decay = sum(c * (p * p).sum() for c, p in zip(hp["wd"], f.params.values()))
    return F.cross_entropy(f(batch[0]), batch[1]) + decay


def val_loss(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1])


def make_problem(T: int = 50, seed: int = 0) -> hg.InnerProblem:
    """The problem compared (also the entry point of ``hypergradient compare``)."""
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X, dtype=torch.get_default_dtype()) / 16, torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    X, y = X[perm], y[perm]
    train, val = (X[:1000], y[:1000]), (X[1000:1400].clone(), y[1000:1400].clone())   # own storage: the memory
    # meter counts a saved view by the whole buffer it views
    batches = [(train[0][i], train[1][i]) for i in (torch.randperm(1000, generator=g)[:64] for _ in range(T))]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    wd = Hyper(torch.full((4,), 1e-3), positive="exp")          # one coefficient per parameter tensor
    sgd = hg.optim.sgd(lr=Hyper(0.1, "tensor", positive="exp"), momentum=0.9)
    return hg.InnerProblem(model, train_loss, val_loss, sgd, hg.Hypers(loss={"wd": wd}),
                           hg.Data(batches, val), horizon=T)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short unroll (T = 10)")
    p.add_argument("--T", type=int, default=None, help="inner steps (default 50, quick 10)")
    p.add_argument("--estimators", default=None, help="comma-separated names (default: every registered one)")
    p.add_argument("--seed", type=int, default=0, help="data, initial weights and the stochastic estimators")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--plot", default=None, help="also draw cosine and norm ratio to this PNG file")
    args = p.parse_args(argv)
    T = args.T or (10 if args.quick else 50)

    problem = make_problem(T, args.seed)
    lam = problem.init_hparams()       # {"optim.lr[0.weight]": ..., ..., "loss.wd": 4 raw values}
    estimators = args.estimators.split(",") if args.estimators else None
    result = hg.compare(problem, lam, estimators, seed=args.seed)
    print(result.table())
    if args.json:
        result.to_json(args.json)
    if args.plot:
        result.plot(args.plot)
    return result.to_dict()


if __name__ == "__main__":
    main()
