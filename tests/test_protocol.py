"""The one estimator protocol (ISSUE 11): typed results, explicit estimator state that can be saved
and resumed bit for bit, the drivers owning the control flow (active steps, offline outer steps,
meta-batches), and every primitive counting its own cost."""

from __future__ import annotations

import io

import pytest
import torch

import hypergradient as hg
from hypergradient.drivers import lockstep, meta_train, offline_step, run_offline, run_online
from hypergradient.drivers.online import online_sum
from hypergradient.estimators import REGISTRY, EstimatorState, OnlineEstimator, get

from conftest import ce_l2, make_problem
from test_conformance import ridge
from test_drivers import regression_problem
from test_meta import LEARNERS, tasks

STATEFUL = [("hyperdistill", {"gamma": 0.9, "period": 2}), ("evograd", {"sigma": 0.01, "population": 3})]


def test_every_online_estimator_follows_the_protocol():
    for name, cls in REGISTRY.items():
        est = get(name)
        assert isinstance(est.new_state(), EstimatorState)
        if cls.online:
            assert isinstance(est, OnlineEstimator), name


@pytest.mark.parametrize("name,options", STATEFUL)
def test_instances_hold_configuration_only(name, options):
    est = get(name, **options)
    config = dict(vars(est))
    lam = regression_problem(T=4).init_hparams()
    res = run_online(regression_problem(T=4), est, lam, torch.optim.Adam(lam.values(), lr=0.05), episodes=2)
    assert vars(est) == config                       # nothing learned or drawn is kept on the instance
    assert not torch.equal(res.est_state.generator.get_state(), est.new_state().generator.get_state())
    if name == "hyperdistill":                       # ... but in the state the driver returns
        assert res.est_state.episodes == 2


@pytest.mark.parametrize("name,options", STATEFUL)
def test_estimator_state_saves_and_resumes_bit_for_bit(name, options):
    """Two episodes in one go equal one episode, torch.save / torch.load of the estimator state, and
    the second episode from the restored state (θ, the episode count, the generator)."""
    def episode(lam, outer, est_state):
        return run_online(regression_problem(T=4), name, lam, outer, est_state=est_state, **options)

    lam = regression_problem(T=4).init_hparams()
    outer = torch.optim.Adam(lam.values(), lr=0.05)
    est = get(name, **options)
    whole = est.new_state()
    episode(lam, outer, whole)
    episode(lam, outer, whole)
    straight = {k: v.detach().clone() for k, v in lam.items()}

    lam = regression_problem(T=4).init_hparams()
    outer = torch.optim.Adam(lam.values(), lr=0.05)
    first = est.new_state()
    episode(lam, outer, first)
    buf = io.BytesIO()
    torch.save({"est": first.state_dict(), "outer": outer.state_dict(), "lam": lam}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    lam2 = {k: v.detach().clone().requires_grad_() for k, v in saved["lam"].items()}
    outer2 = torch.optim.Adam(lam2.values(), lr=0.05)
    outer2.load_state_dict(saved["outer"])
    resumed = est.new_state()
    resumed.load_state_dict(saved["est"])
    episode(lam2, outer2, resumed)
    for k in straight:
        assert torch.equal(lam2[k].detach(), straight[k]), k
    assert resumed.state_dict().keys() == whole.state_dict().keys()
    with pytest.raises(ValueError, match="expects the keys"):
        resumed.load_state_dict({"seed": 1})


def test_estimator_state_copy_branches_without_advancing():
    est = get("evograd", sigma=0.01)
    problem = make_problem("sgd", dict(lr=0.1), train_loss=ce_l2, loss_hparams={"l2": hg.Hyper(0.01)}, T=3)
    lam = problem.init_hparams()
    a = est.new_state()
    b = a.copy()
    x, y = est(problem, lam, est_state=a), est(problem, lam, est_state=b)
    assert torch.equal(x.flat(), y.flat())
    z = est(problem, lam, est_state=a)                     # a has advanced: new perturbations
    assert not torch.equal(x.flat(), z.flat())


def test_lockstep_takes_outer_steps_only_where_the_estimator_is_active():
    """N.IFT(N, K) gives hypergradients over the last K steps only: K outer steps per episode, and λ
    does not move at the inactive steps (Adam's zero-gradient steps would move it)."""
    problem, lam, _ = ridge(T=6)
    lam = {k: v.detach().clone().requires_grad_() for k, v in lam.items()}
    outer = torch.optim.Adam(lam.values(), lr=0.1)
    seen = []
    res = run_online(problem, "ift", lam, outer, episodes=2, solver="neumann", maxiter=3, window=2,
                     callback=lambda states, value: seen.append(None if value is None else lam["loss.l2"].item()))
    assert res.outer_steps == 4 and outer.state[lam["loss.l2"]]["step"].item() == 4
    assert res.history["active"] == 2 * ([False] * 4 + [True] * 2)
    assert seen[:4] == [None] * 4 and seen[4] != seen[5]


def test_run_offline_is_the_hand_written_loop():
    def manual():
        problem = make_problem("sgd", dict(lr=hg.Hyper(0.2), momentum=0.5), T=5)
        lam = problem.init_hparams()
        outer = torch.optim.Adam(lam.values(), lr=0.05)
        losses = []
        for _ in range(3):
            h = hg.estimate("rmd", problem, lam, storage="recompute")
            outer.zero_grad()
            h.to_grad(lam)
            outer.step()
            losses.append(float(h.val_loss))
        return lam, losses, problem.cost

    problem = make_problem("sgd", dict(lr=hg.Hyper(0.2), momentum=0.5), T=5)
    lam = problem.init_hparams()
    res = hg.run_offline(problem, "rmd", lam, torch.optim.Adam(lam.values(), lr=0.05), 3, storage="recompute")
    ref, losses, cost = manual()
    assert all(torch.equal(lam[k], ref[k]) for k in lam) and res.history["val_loss"] == losses
    assert res.cost == cost == hg.Cost(steps=15, vjps=15, val_grads=3)
    assert res.last.state is not None and res.last.state.t == 5
    with pytest.raises(ValueError, match="steps"):
        run_offline(problem, "rmd", lam, torch.optim.Adam(lam.values()), 0)


def test_offline_meta_batch_is_the_mean_of_offline_hypergradients():
    problem_a = make_problem("sgd", dict(lr=hg.Hyper(0.2)), T=4, data_seed=0)
    problem_b = make_problem("sgd", dict(lr=hg.Hyper(0.2)), T=4, data_seed=1)
    lam = problem_a.init_hparams()
    est = get("rmd")
    ga, gb = est(problem_a, lam), est(problem_b, lam)
    outer = torch.optim.SGD(lam.values(), lr=1.0)
    before = lam["optim.lr"].detach().clone()
    hgs = offline_step([problem_a, problem_b], est, lam, outer, [problem_a.init_state(), problem_b.init_state()],
                       None, est.new_state())
    torch.testing.assert_close(before - lam["optim.lr"].detach(), (ga.value["optim.lr"] + gb.value["optim.lr"]) / 2,
                               rtol=1e-14, atol=0)
    assert [h.state.t for h in hgs] == [4, 4]


def test_meta_train_with_an_offline_estimator():
    T = 3
    L = LEARNERS["anil"](T)
    lam = L.init_hparams()
    before = {k: v.detach().clone() for k, v in lam.items()}
    seen = []
    res = meta_train(L, "rmd", lam, torch.optim.Adam(lam.values(), lr=1e-2), tasks(), iterations=2, meta_batch=2,
                     callback=seen.append)
    assert res.outer_steps == 2 and [m.outer_steps for m in seen] == [1, 1]
    assert any(not torch.equal(before[k], lam[k].detach()) for k in lam)
    assert res.cost == seen[0].cost + seen[1].cost and res.cost.steps == 2 * 2 * T
    assert seen[-1].init is res.init and len(res.history["meta_val_loss"]) == 2
    got = []

    def keep_phi(phi, problems, finals, lam, hgs=None):     # an InitUpdate: sees the offline hypergradients
        got.append(hgs)
        return phi, None
    res = meta_train(L, "rmd", lam, torch.optim.Adam(lam.values(), lr=1e-2), tasks(), iterations=1, meta_batch=2,
                     init_update=keep_phi)
    assert len(got[0]) == 2 and all(h.state.t == T for h in got[0])
    assert all(torch.equal(res.init[n], v) for n, v in L.init_weights().items())


def test_online_sum_and_lockstep_are_the_online_protocol():
    problem = regression_problem(T=4)
    lam = problem.init_hparams()
    est = get("one_step")
    total, last = online_sum(problem, est, lam, problem.init_state(), 4, est.new_state())
    carry = est.online_init(problem, lam, problem.init_state())
    state, parts = problem.init_state(), []
    for _ in range(4):
        h, carry = est.online_step(problem, lam, state, carry)
        state = h.state
        parts.append(h.value["loss.l2"])
    torch.testing.assert_close(total["loss.l2"], sum(parts), rtol=0, atol=0)
    assert torch.equal(last.value["loss.l2"], parts[-1]) and last.state.t == 4
    r = lockstep([problem], est, lam, torch.optim.SGD(lam.values(), lr=0.0), [problem.init_state()], 4,
                 est.new_state())
    assert r.outer_steps == 4 and r.cost == hg.Cost(steps=4, vjps=4, val_grads=4)


def test_every_primitive_counts_its_own_cost():
    problem = make_problem("sgd", dict(lr=hg.Hyper(0.2), momentum=0.5), T=4)
    lam = {k: v.detach() for k, v in problem.init_hparams().items()}
    s0 = problem.init_state()
    problem.cost = hg.Cost()
    problem.unroll(s0, lam, 3)
    assert problem.cost == hg.Cost(steps=3)
    s3, _ = problem.run(s0, lam, 3)
    problem.cost = hg.Cost()
    problem.vjp_through(s0, lam, 3, [torch.ones_like(x) for x in s3.tensors()])
    assert problem.cost == hg.Cost(vjps=3)
    problem.cost = hg.Cost()
    _, _, hz = problem.step_hvp(s0, lam, [torch.ones(2, *p.shape, dtype=p.dtype) for p in s0.params])
    assert problem.cost == hg.Cost(steps=1, hvps=2) and hz[0].shape[0] == 2
    problem.cost = hg.Cost()
    problem.mixed_vjp(s0, lam, [torch.ones_like(p) for p in s0.params], 1)
    assert problem.cost == hg.Cost(hvps=1)


def test_hparams_view_reads_by_name():
    problem = make_problem("sgd", {"lr": hg.Hyper(0.1, "tensor", positive="exp"), "momentum": 0.9},
                           train_loss=ce_l2, loss_hparams={"l2": hg.Hyper(0.01, positive="softplus")}, T=3)
    lam = problem.init_hparams()
    view = problem.hparams_view(lam)
    assert set(view["lr"]) == set(problem.names)
    assert all(abs(v.item() - 0.1) < 1e-12 for v in view["lr"].values())
    assert view["momentum"] == 0.9 and abs(view["l2"].item() - 0.01) < 1e-12
    assert set(view) == {"lr", "momentum", "dampening", "weight_decay", "l2"} and len(view) == 5
    with pytest.raises(KeyError, match="known"):
        view["beta"]
