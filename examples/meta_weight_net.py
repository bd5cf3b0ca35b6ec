"""Meta-Weight-Net on noisy labels: learn to down-weight training examples whose label is wrong.

Digits from scikit-learn, 40% of the 1,000 training labels replaced by a wrong class; a clean meta set
of 100 images is the validation data. The training loss is mean_i WeightNet(ℓ_i) · ℓ_i, where a small
MLP (:class:`hypergradient.learners.WeightNet`) maps each example's loss ℓ_i to a weight in (0, 1); its
parameters are the hyperparameters λ (``Hypers(modules={"mwn": net})``). The weighted losses are
divided by the batch's total weight: otherwise λ lowers the meta loss fastest by raising every weight
(a larger learning rate in disguise) and ends with every weight at 1, noisy or not (as the library's
label-noise reproduction found without it, ``results/label-noise``). λ is updated online, after
every inner SGD step, by the one-step lookahead hypergradient of the clean meta loss (``"one_step"``,
Meta-Weight-Net's own algorithm), through ``hg.run_online``. The same model trained on the plain
(unweighted) loss is the baseline.

It prints the mean weight the learned net gives clean and noisy training examples at the end, the share
of the total weight on clean examples (their share of the data without weighting), and the clean test
accuracy of the weighted and the unweighted model.

    python examples/meta_weight_net.py            # T = 1,500 inner steps
    python examples/meta_weight_net.py --quick    # T = 400
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import hypergradient as hg
from hypergradient.learners import WeightNet


def noisy_digits(seed: int, noise: float):
    """(train with a fraction ``noise`` of wrong labels, which labels are wrong, clean meta set, clean test)."""
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X, dtype=torch.float32) / 16, torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    X, y = X[perm], y[perm]
    Xtr, ytr = X[:1000], y[:1000]
    wrong = torch.rand(1000, generator=g) < noise
    ytr = torch.where(wrong, (ytr + torch.randint(1, 10, (1000,), generator=g)) % 10, ytr)  # another class
    return (Xtr, ytr), wrong, (X[1000:1100], y[1000:1100]), (X[1100:], y[1100:])


def weighted_ce(f, batch, hp):
    """Meta-Weight-Net's training loss: the net sees each example's loss (detached) and weights it; the
    weights are normalized over the batch (see the module docstring)."""
    losses = F.cross_entropy(f(batch[0]), batch[1], reduction="none")
    w = hp["mwn"](losses.detach().unsqueeze(-1)).squeeze(-1)
    return (w * losses).sum() / w.sum()


def ce(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (T = 400)")
    p.add_argument("--T", type=int, default=None, help="inner steps (default 1500, quick 400)")
    p.add_argument("--noise", type=float, default=0.4, help="fraction of wrong training labels")
    p.add_argument("--seed", type=int, default=0, help="data, batches and initial weights")
    args = p.parse_args(argv)
    T = args.T or (400 if args.quick else 1500)

    (X, y), wrong, meta, (Xte, yte) = noisy_digits(args.seed, args.noise)
    g = torch.Generator().manual_seed(args.seed)
    batches = [(X[i], y[i]) for i in (torch.randperm(1000, generator=g)[:100] for _ in range(T))]

    def problem(train_loss, hypers):
        torch.manual_seed(args.seed)        # the same initial weights for both runs
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        return hg.InnerProblem(model, train_loss, ce, hg.optim.sgd(lr=0.1, momentum=0.9), hypers,
                               data=hg.Data(batches, meta), horizon=T)

    def test_accuracy(pr, state):
        with torch.no_grad():
            return (pr.forward(state)(Xte).argmax(-1) == yte).float().mean().item()

    t0 = time.perf_counter()
    torch.manual_seed(100 + args.seed)
    net = WeightNet(hidden=100)
    mwn = problem(weighted_ce, hg.Hypers(modules={"mwn": net}))
    lam = mwn.init_hparams()                 # the WeightNet's parameters
    res = hg.run_online(mwn, "one_step", lam, torch.optim.Adam(lam.values(), lr=1e-3), progress=False)
    seconds = time.perf_counter() - t0
    plain = problem(ce, hg.Hypers())
    plain_state, _ = plain.run(plain.init_state(), {}, T)

    with torch.no_grad():                    # the learned weighting of every training example at the end
        losses = F.cross_entropy(mwn.forward(res.state)(X), y, reduction="none")
        weight = mwn.learned(lam)["mwn"]             # a copy of the WeightNet with the learned parameters
        w = weight(losses.unsqueeze(-1)).squeeze(-1)
        grid = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
        curve = weight(torch.tensor(grid).unsqueeze(-1)).squeeze(-1).tolist()
    out = {"T": T, "seconds": seconds, "weight_clean": w[~wrong].mean().item(), "weight_noisy": w[wrong].mean().item(),
           "clean_share": (w[~wrong].sum() / w.sum()).item(), "clean_fraction": (~wrong).float().mean().item(),
           "loss_clean": losses[~wrong].mean().item(), "loss_noisy": losses[wrong].mean().item(),
           "test_acc_weighted": test_accuracy(mwn, res.state), "test_acc_unweighted": test_accuracy(plain, plain_state),
           "weight_curve": dict(zip(grid, curve))}
    print(f"Meta-Weight-Net, {int(wrong.sum())} of 1000 labels wrong, T={T} online steps in {seconds:.1f}s")
    print(f"mean learned weight: clean examples {out['weight_clean']:.3f}, noisy examples {out['weight_noisy']:.3f} "
          f"(their mean losses {out['loss_clean']:.2f} and {out['loss_noisy']:.2f})")
    print("learned weight w(loss):", ", ".join(f"w({l:g}) = {v:.3f}" for l, v in zip(grid, curve)))
    print(f"share of the total weight on clean examples {out['clean_share']:.3f} (their share of the data "
          f"{out['clean_fraction']:.3f})")
    print(f"clean test accuracy: weighted {out['test_acc_weighted']:.3f}, unweighted {out['test_acc_unweighted']:.3f}")
    return out


if __name__ == "__main__":
    main()
