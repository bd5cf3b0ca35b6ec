"""higher's classic MAML example (its omniglot script), ported two ways, on tasks that ship here.

higher's example trains a 4-layer CNN on 5-way 1-shot Omniglot with ``innerloop_ctx``: per task, a few
SGD steps on the support set with ``copy_initial_weights=False`` and ``track_higher_grads=True``, the
query loss backpropagated to ``net.parameters()``, Adam as the meta-optimizer. Omniglot cannot be
downloaded here, so the tasks are N-way K-shot problems drawn from scikit-learn's 8×8 digits (the same
structure at a smaller scale: 5 ways, 1 shot, 15 queries per class, a 3-layer CNN with BatchNorm in
batch-statistics mode, as in higher's example).

1. :func:`meta_gradient_higher`: higher's loop unchanged, with ``import hypergradient.higher as higher``.
2. :func:`meta_gradient_native`: the same meta-gradient with the library's own API: one
   ``InnerProblem`` per task and ``hg.estimate("rmd", ..., wrt_init=True)``, whose
   ``info["init_grad"]`` is dL_query/dw_0 (second-order MAML).

``python examples/maml_higher.py`` checks that both give the same meta-gradients (float64), then
meta-trains a few iterations through the higher-style loop and reports the query accuracy.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
import hypergradient.higher as higher   # the only change to higher's example

N_WAY, K_SHOT, K_QUERY, N_INNER, INNER_LR = 5, 1, 15, 5, 0.1


def digits_tasks(seed: int = 0, dtype: torch.dtype = torch.float32):
    """An endless sampler of N-way K-shot tasks over scikit-learn's digits: (x_spt, y_spt, x_qry, y_qry)."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=dtype).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    by_class = [X[y == c] for c in range(10)]
    g = torch.Generator().manual_seed(seed)

    def sample():
        classes = torch.randperm(10, generator=g)[:N_WAY]
        xs, ys, xq, yq = [], [], [], []
        for label, c in enumerate(classes.tolist()):
            idx = torch.randperm(len(by_class[c]), generator=g)[:K_SHOT + K_QUERY]
            xs.append(by_class[c][idx[:K_SHOT]])
            xq.append(by_class[c][idx[K_SHOT:]])
            ys += [label] * K_SHOT
            yq += [label] * K_QUERY
        return torch.cat(xs), torch.tensor(ys), torch.cat(xq), torch.tensor(yq)
    return sample


def make_net(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=1.0, affine=True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=1.0, affine=True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, N_WAY)).to(dtype)


def meta_gradient_higher(net: nn.Module, tasks) -> tuple[list[torch.Tensor], float]:
    """higher's training step (its example, unchanged): the meta-gradient summed over the meta-batch
    into ``net.parameters()``'s ``.grad``, as its ``qry_loss.backward()`` does."""
    net.train()
    net.zero_grad()
    inner_opt = torch.optim.SGD(net.parameters(), lr=INNER_LR)
    correct = 0.0
    for x_spt, y_spt, x_qry, y_qry in tasks:
        with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False) as (fnet, diffopt):
            for _ in range(N_INNER):
                spt_loss = F.cross_entropy(fnet(x_spt), y_spt)
                diffopt.step(spt_loss)
            qry_logits = fnet(x_qry)
            qry_loss = F.cross_entropy(qry_logits, y_qry)
            correct += (qry_logits.argmax(dim=1) == y_qry).float().mean().item()
            qry_loss.backward()
    return [p.grad.detach().clone() for p in net.parameters()], correct / len(tasks)


def meta_gradient_native(net: nn.Module, tasks) -> list[torch.Tensor]:
    """The same meta-gradient through the native API: per task an InnerProblem trained by SGD on the
    support set, validated on the query set in training mode (BatchNorm's batch statistics, as
    higher's example), and the reverse pass's gradient at the initial weights."""
    ce = lambda f, batch, hp: F.cross_entropy(f(batch[0]), batch[1])  # noqa: E731
    total = None
    for x_spt, y_spt, x_qry, y_qry in tasks:
        problem = hg.InnerProblem(net, ce, ce, hg.optim.sgd(lr=hg.Hyper(INNER_LR)),
                                  data=hg.Data([(x_spt, y_spt)], (x_qry, y_qry)), horizon=N_INNER,
                                  settings=hg.Settings(val_mode="train"))
        h = hg.estimate("rmd", problem, problem.init_hparams(), wrt_init=True)
        g = [h.info["init_grad"][n] for n in problem.names]
        total = g if total is None else [a + b for a, b in zip(total, g)]
    return total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (3 iterations, meta-batches of 2)")
    p.add_argument("--iterations", type=int, default=None, help="meta-training iterations after the check "
                   "(default 30, quick 3)")
    p.add_argument("--meta-batch", type=int, default=None, help="tasks per meta-batch (default 4, quick 2)")
    args = p.parse_args(argv)
    args.iterations = args.iterations or (3 if args.quick else 30)
    args.meta_batch = args.meta_batch or (2 if args.quick else 4)
    # 1. both ports give the same meta-gradient (float64)
    net = make_net(torch.float64)
    sample = digits_tasks(0, torch.float64)
    batch = [sample() for _ in range(args.meta_batch)]
    g_compat, _ = meta_gradient_higher(net, batch)
    g_native = meta_gradient_native(net, batch)
    # over all weights together: a convolution's bias before BatchNorm has a true gradient of 0, so its
    # own relative difference compares rounding noise
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731
    err = ((flat(g_compat) - flat(g_native)).norm() / flat(g_native).norm()).item()
    print(f"meta-gradient, compat layer vs native API: relative difference {err:.2e} (float64)")
    # 2. higher's meta-training loop, unchanged, for a few iterations (float32)
    net, sample = make_net(), digits_tasks(1)
    meta_opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    accs = []
    for it in range(args.iterations):
        meta_gradient_higher(net, [sample() for _ in range(args.meta_batch)])
        meta_opt.step()
        _, acc = meta_gradient_higher(net, [sample() for _ in range(args.meta_batch)])
        accs.append(acc)
        if it % 10 == 0 or it == args.iterations - 1:
            print(f"iteration {it:3d}: query accuracy {acc:.3f}")
    return {"relative_difference": err, "accuracy": accs}


if __name__ == "__main__":
    main()
