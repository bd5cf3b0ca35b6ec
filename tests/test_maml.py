"""Second-order MAML (ISSUE 13, item 5): the meta-gradient dL_query/dφ at the initialization from the reverse
pass over the inner loop, against finite differences in φ (float64), and equal to first-order MAML where the
inner Hessian vanishes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient.drivers import meta_train
from hypergradient.learners import ProblemLearner, supervised

from conftest import rel_err
from test_meta import LEARNERS, tasks


def query_loss(problem, lam, phi, T):
    s, _ = problem.run(problem.init_state(phi), lam, T)
    return problem.val_loss_at(s, lam).item()


@pytest.mark.parametrize("storage", ["graph", "recompute", "checkpoint"])
def test_init_grad_matches_finite_differences_in_phi(storage):
    T = 4
    L = LEARNERS["anil"](T)
    lam = {k: v.detach() for k, v in L.init_hparams().items()}
    phi = L.init_weights()
    problem = L.problem(tasks().sample(torch.Generator().manual_seed(2)))
    h = hg.estimate("rmd", problem, lam, state=problem.init_state(phi), storage=storage, wrt_init=True)
    eps, fd = 1e-6, {}
    for n, w in phi.items():
        g = torch.zeros_like(w)
        for i in range(w.numel()):
            up, dn = {**phi, n: w.clone()}, {**phi, n: w.clone()}
            up[n].view(-1)[i] += eps
            dn[n].view(-1)[i] -= eps
            g.view(-1)[i] = (query_loss(problem, lam, up, T) - query_loss(problem, lam, dn, T)) / (2 * eps)
        fd[n] = g
    assert rel_err(h.info["init_grad"], fd) < 1e-7
    tr = hg.estimate("truncated_rmd", problem, lam, state=problem.init_state(phi), K=T, wrt_init=True)
    assert rel_err(tr.info["init_grad"], h.info["init_grad"]) < 1e-10


def test_maml_step_and_its_first_order_limit():
    """meta_train(init_update="maml") takes φ − η · mean_b dL_query/dφ; with a training loss linear in w
    (zero inner Hessian: dw_T/dw_0 = I under plain SGD) it is first-order MAML's step exactly."""
    T = 3
    L = LEARNERS["anil"](T)
    lam = L.init_hparams()
    frozen = torch.optim.SGD(lam.values(), lr=0.0)
    phi = L.init_weights()
    task = tasks().sample(torch.Generator().manual_seed(7))
    p = L.problem(task)
    h = hg.estimate("rmd", p, lam, state=p.init_state(phi), wrt_init=True)
    res = meta_train(L, "rmd", lam, frozen, tasks(), iterations=1, meta_batch=1, seed=7, init_lr=0.1,
                     init_update="maml", progress=False)
    for n in phi:
        torch.testing.assert_close(res.init[n], phi[n] - 0.1 * h.info["init_grad"][n], rtol=1e-13, atol=1e-14)
    assert res.history["meta_val_loss"] == [float(h.val_loss)]

    torch.manual_seed(0)
    linear = nn.Linear(1, 1).double()
    train = lambda f, b, hp: (f(b[0]) * b[1]).mean()              # noqa: E731  (linear in w: H = 0)
    learner = ProblemLearner(linear, train, supervised(torch.nn.functional.mse_loss), hg.optim.sgd(lr=0.3),
                             hg.Hypers(loss={"s": hg.Hyper(1.0)}), horizon=T)
    lam = learner.init_hparams()
    frozen = torch.optim.SGD(lam.values(), lr=0.0)
    so = meta_train(learner, "rmd", lam, frozen, tasks(), iterations=1, meta_batch=2, init_update="maml",
                    init_lr=0.2, progress=False)
    fo = meta_train(learner, "rmd", lam, frozen, tasks(), iterations=1, meta_batch=2, init_update="fomaml",
                    init_lr=0.2, progress=False)
    for n in so.init:
        torch.testing.assert_close(so.init[n], fo.init[n], rtol=1e-14, atol=1e-15)


def test_maml_refuses_estimators_without_the_reverse_pass():
    L = LEARNERS["anil"](3)
    lam = L.init_hparams()
    outer = torch.optim.SGD(lam.values(), lr=0.0)
    for name in ("one_step", "fmd", "drmad"):
        with pytest.raises(ValueError, match="'rmd' or 'truncated_rmd'"):
            meta_train(L, name, lam, outer, tasks(), iterations=1, init_update="maml", progress=False)
