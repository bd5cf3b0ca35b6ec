"""A seeded random property test (ISSUE 12, part 5): 100 random tiny problems — MLPs of 20–60 weights with
smooth activations, optional BatchNorm, every optimizer, every granularity, T from 1 to 10 — on which
``rmd`` (three storages), ``fmd`` (both paths where they apply) and ``truncated_rmd(K=T)`` all match central
finite differences in float64. Recurrent layers and ``weight_norm`` inside the inner loop, likewise."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.core.optimizer import OPTIMIZERS, get_optimizer

from conftest import AGREE_RTOL, assert_fd_close, fd_grad, rel_err, val_after

CASES = 100
FD_RTOL = 1e-5
HPARAMS = {"sgd": {"lr": 0.2, "momentum": 0.5, "weight_decay": 0.02}, "adam": {"lr": 0.03, "beta1": 0.8},
           "adamw": {"lr": 0.03, "weight_decay": 0.05}, "rmsprop": {"lr": 0.01, "momentum": 0.3},
           "adagrad": {"lr": 0.1, "weight_decay": 0.02}, "adadelta": {"lr": 0.5, "rho": 0.8},
           "adamax": {"lr": 0.03, "beta2": 0.9}, "asgd": {"lr": 0.2, "lambd": 0.1},
           "rprop": {"lr": 0.03, "etaplus": 1.3}, "nadam": {"lr": 0.03, "momentum_decay": 0.1},
           "radam": {"lr": 0.03, "beta1": 0.8}}
GRANULARITY = {"scalar": lambda v, T: Hyper(v), "tensor": lambda v, T: Hyper(v, "tensor"),
               "element": lambda v, T: Hyper(v, "element"), "schedule": lambda v, T: Hyper(v, schedule=min(2, T)),
               "exp": lambda v, T: Hyper(v, "tensor", positive="exp")}
ACTS = (nn.Tanh, nn.Sigmoid, nn.Softplus, nn.GELU)


def random_case(seed: int) -> tuple[hg.InnerProblem, int]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    while True:              # 20–60 weights (BatchNorm's affine parameters included)
        n_in, hidden, n_out, bn = rng.randint(2, 4), rng.randint(3, 8), rng.randint(2, 3), rng.random() < 0.3
        if 20 <= (n_in + 1) * hidden + (hidden + 1) * n_out + 2 * hidden * bn <= 60:
            break
    layers: list[nn.Module] = [nn.Linear(n_in, hidden)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [rng.choice(ACTS)(), nn.Linear(hidden, n_out)]
    model = nn.Sequential(*layers).double()
    name = rng.choice(sorted(OPTIMIZERS))
    T = rng.randint(1, 10)
    gran = rng.choice(sorted(GRANULARITY))
    hypers = {k: GRANULARITY[gran](v, T) if i == 0 or rng.random() < 0.5 else v
              for i, (k, v) in enumerate(HPARAMS[name].items())}
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(12, n_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_out, (12,), generator=g)
    Xv = torch.randn(10, n_in, generator=g, dtype=torch.float64)
    yv = torch.randint(0, n_out, (10,), generator=g)
    ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])              # noqa: E731
    train = lambda f, b, hp: ce(f, b, hp) + hp["l2"] * sum((p ** 2).sum() for p in f.params.values())  # noqa: E731
    problem = hg.InnerProblem(model, train, ce, get_optimizer(name, **hypers), hg.Hypers(loss={"l2": Hyper(0.01)}),
                              hg.Data([(X[:6], y[:6]), (X[6:], y[6:])], (Xv, yv)), horizon=T)
    return problem, T


def richardson(fun, lam, eps: float = 1e-6) -> dict:
    """Central differences at eps and eps/2 combined as (4 D(eps/2) − D(eps))/3: truncation O(eps⁴). Adaptive
    optimizers early in training (RMSprop, Adagrad dividing by √v of tiny gradients) curve so sharply in
    their learning rate that plain central differences at 1e-6 are off by up to 2e-4 there, while rmd and
    fmd (independent methods) agree to 1e-15."""
    a, b = fd_grad(fun, lam, eps), fd_grad(fun, lam, eps / 2)
    return {k: (4 * b[k] - a[k]) / 3 for k in a}


def test_random_problems_match_finite_differences():
    seen = set()
    for seed in range(CASES):
        problem, T = random_case(seed)
        lam = problem.init_hparams()
        assert 20 <= sum(w.numel() for w in problem.init_state().params) <= 60
        fd = fd_grad(val_after(problem), lam)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # (an lr that nothing reaches in one step, e.g. Adam at T = 1)
            results = [hg.estimate("rmd", problem, lam, storage=s) for s in ("graph", "recompute", "checkpoint")]
            results += [hg.estimate("truncated_rmd", problem, lam, K=T), hg.estimate("fmd", problem, lam)]
            if results[-1].info["closed_form"]:
                results.append(hg.estimate("fmd", problem, lam, closed_form=False))
        if max(rel_err(h.value, fd) for h in results) > FD_RTOL / 10:
            fd = richardson(val_after(problem), lam)     # a sharper oracle where plain differences are too coarse
        total = float(torch.cat([v.reshape(-1) for v in fd.values()]).norm())
        for h in results:
            assert_fd_close(h.value, fd, rtol=FD_RTOL, per_key=False)
            for k in fd:     # key by key above FD's own noise (~1e-10 absolute after Richardson's round-off)
                scale = max(float(fd[k].norm()), 1e-2 * total)
                assert float((h.value[k] - fd[k]).norm()) / scale < FD_RTOL, (seed, k)
            assert rel_err(h.value, results[0].value) < AGREE_RTOL    # the exact methods agree to round-off
        seen.add((type(problem.optimizer).__name__, T))
    assert {o for o, _ in seen} == {type(get_optimizer(n)).__name__ for n in OPTIMIZERS}


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module]):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = cell(2, 3, batch_first=True)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize("module", [lambda: Recurrent(nn.RNN), lambda: Recurrent(nn.LSTM), lambda: Recurrent(nn.GRU),
                                    lambda: nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)),
                                                          nn.Tanh(), nn.Linear(3, 2))],
                         ids=["rnn", "lstm", "gru", "weight_norm"])
def test_recurrent_layers_and_weight_norm_inside_the_inner_loop(module):
    torch.manual_seed(1)
    model = module().double()
    g = torch.Generator().manual_seed(0)
    seq = isinstance(model, Recurrent)
    X = torch.randn(8, 5, 2, generator=g, dtype=torch.float64) if seq else torch.randn(8, 4, generator=g,
                                                                                       dtype=torch.float64)
    y = torch.randint(0, 2, (8,), generator=g)
    ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])             # noqa: E731
    problem = hg.InnerProblem(model, ce, ce, hg.optim.sgd(lr=Hyper(0.3, "tensor"), momentum=0.5), hg.Hypers(),
                              hg.Data([(X, y)], (X, y)), horizon=4)
    lam = problem.init_hparams()
    s, _ = problem.run(problem.init_state(), lam, 1)
    with torch.no_grad():                                          # the functional model is the module
        torch.testing.assert_close(problem.forward(problem.init_state())(X), model(X), rtol=1e-12, atol=1e-12)
    fd = fd_grad(val_after(problem), lam)
    for h in (hg.estimate("rmd", problem, lam), hg.estimate("rmd", problem, lam, storage="recompute"),
              hg.estimate("fmd", problem, lam)):
        assert_fd_close(h.value, fd)
