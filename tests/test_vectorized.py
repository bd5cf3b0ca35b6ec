"""Vectorized meta-batches (ALGORITHMS.md §11): B task problems stacked on a leading task axis run as one
inner loop; the hypergradient of the summed losses is the sum of the per-task hypergradients, and the
per-task final states are the sequential ones (float64, 1e-10 relative)."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient.core.stacked import stack_problems
from hypergradient.estimators import get
from hypergradient.learners import ANIL, MetaSGD, ProblemLearner, SinusoidTasks, anil_mlp, supervised

B, T = 4, 5
RTOL = 1e-10
mse = supervised(torch.nn.functional.mse_loss)


def sample(n: int = B, seed: int = 0, dtype=torch.float64, **kw):
    g = torch.Generator().manual_seed(seed)
    s = SinusoidTasks(dtype=dtype, **kw)
    return [s.sample(g) for _ in range(n)]


def anil(T=T, sizes=(1, 8, 8, 1), **kw):
    return ANIL(anil_mlp(sizes, act=nn.Tanh).double(), horizon=T, **kw)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def assert_sum(stacked_hg, seq_hgs, stacked, n=B):
    """hg / B = the mean of the per-task hypergradients; the unstacked final states = the sequential ones."""
    mean = {k: sum(h.value[k] for h in seq_hgs) / n for k in stacked_hg.value}
    scale = float(torch.cat([v.reshape(-1) for v in mean.values()]).norm())   # (a zero entry: BatchNorm'd bias)
    for k, v in stacked_hg.value.items():
        assert float((v / n - mean[k]).norm()) < RTOL * max(float(mean[k].norm()), scale), k
    assert rel(stacked_hg.val_loss, sum(h.val_loss for h in seq_hgs)) < RTOL
    for s, h in zip(stacked.unstack_state(stacked_hg.state), seq_hgs):
        for x, y in zip(s.tensors(), h.state.tensors()):      # weights and momentum buffers
            assert rel(x, y) < RTOL
        for k in h.state.buffers:
            assert torch.allclose(s.buffers[k], h.state.buffers[k], rtol=RTOL, atol=1e-14), k


def run_both(learner, tasks, name, **options):
    lam, phi = learner.init_hparams(), learner.init_weights()
    est = get(name, **options)
    seq = [est(p, lam, state=p.init_state(phi)) for p in (learner.problem(t) for t in tasks)]
    stacked = stack_problems([learner.problem(t) for t in tasks])
    return est(stacked, lam, state=stacked.init_state(phi)), seq, stacked


ESTIMATORS = [("rmd", {}), ("rmd", {"storage": "recompute"}), ("rmd", {"storage": "checkpoint", "every": 2}),
              ("truncated_rmd", {"K": 2}), ("one_step", {}), ("first_order", {}), ("online_rmd", {}), ("drmad", {})]


@pytest.mark.parametrize("name,options", ESTIMATORS, ids=[n + "".join(f"-{v}" for v in o.values()) for n, o in ESTIMATORS])
def test_stacked_hypergradient_is_the_sum_of_the_tasks(name, options):
    hgs, seq, stacked = run_both(anil(), sample(), name, **options)
    assert stacked.B == B and hgs.state.params[0].shape[0] == B
    assert_sum(hgs, seq, stacked)


def test_online_rmd_step_by_step_and_momentum_buffers_stack():
    L, tasks = anil(), sample()
    lam, phi = L.init_hparams(), L.init_weights()
    est = get("online_rmd")
    probs = [L.problem(t) for t in tasks]
    stacked = stack_problems([L.problem(t) for t in tasks])
    carries = [est.online_init(p, lam, p.init_state(phi)) for p in probs]
    states = [p.init_state(phi) for p in probs]
    c, s = est.online_init(stacked, lam, stacked.init_state(phi)), stacked.init_state(phi)
    for _ in range(T):
        per = [est.online_step(p, lam, st, cr) for p, st, cr in zip(probs, states, carries)]
        h, c = est.online_step(stacked, lam, s, c)
        assert_sum(h, [x[0] for x in per], stacked)
        carries, states, s = [x[1] for x in per], [x[0].state for x in per], h.state
    assert any(float(m.abs().max()) > 0 for m in s.opt.momentum_buffer)      # SGD momentum 0.9 in use


def test_maml_gradient_at_the_initialization_is_per_task():
    hgs, seq, stacked = run_both(anil(), sample(), "rmd", wrt_init=True)
    for n, g in hgs.info["init_grad"].items():
        for b, h in enumerate(seq):
            assert rel(g[b], h.info["init_grad"][n]) < RTOL


def test_elementwise_learning_rates_broadcast_over_tasks():
    L = MetaSGD(anil_mlp((1, 8, 1), act=nn.Tanh).double(), horizon=T, momentum=0.5)
    hgs, seq, stacked = run_both(L, sample(), "rmd")
    assert hgs.value["optim.lr[head.weight]"].shape == (1, 8)
    assert_sum(hgs, seq, stacked)


def test_batchnorm_statistics_per_task_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()
    L = ProblemLearner(model, mse, mse, hg.optim.sgd(lr=0.05, momentum=0.9), hg.Hypers(model="0"), horizon=T)
    hgs, seq, stacked = run_both(L, sample(), "rmd")
    assert hgs.state.buffers["1.running_mean"].shape == (B, 8)
    assert_sum(hgs, seq, stacked)
    means = hgs.state.buffers["1.running_mean"]
    assert not torch.allclose(means[0], means[1])                           # statistics of each task's own data
    assert torch.equal(hgs.state.buffers["1.num_batches_tracked"], torch.full((B,), T))  # T steps


def test_dropout_draws_do_not_depend_on_batching():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 1)).double()
    L = ProblemLearner(model, mse, mse, hg.optim.sgd(lr=0.05), hg.Hypers(model="0"), horizon=T,
                       settings=hg.Settings(seed=3))
    hgs, seq, stacked = run_both(L, sample(), "rmd", storage="recompute")
    assert_sum(hgs, seq, stacked)


def test_states_stack_and_unstack():
    L = anil()
    stacked = stack_problems([L.problem(t) for t in sample()])
    phi = L.init_weights()
    s0 = stacked.init_state(phi)
    assert all(torch.equal(w[b], phi[n]) for n, w in zip(stacked.names, s0.params) for b in range(B))
    s, _ = stacked.run(s0, L.init_hparams(), 3)
    again = stacked.stack_states(stacked.unstack_state(s))
    assert all(torch.equal(x, y) for x, y in zip(s.tensors(), again.tensors())) and again.t == 3
    assert torch.equal(stacked.init_state(s.params).params[0], s.params[0])       # already stacked: kept
    with pytest.raises(ValueError, match="expected"):
        stacked.init_state({n: torch.zeros(3, 3) for n in stacked.names})
    x = torch.stack([t.query[0] for t in sample()])                         # the model of every task, vmapped
    lam = L.init_hparams()
    with torch.no_grad():
        out = stacked.forward(s, lam)(x)
        for b, (p, sb) in enumerate(zip(stacked.problems, stacked.unstack_state(s))):
            assert rel(out[b], p.forward(sb, lam)(x[b])) < RTOL


def test_mismatched_tasks_are_refused():
    L, tasks = anil(), sample()
    p = L.problem(tasks[0])
    with pytest.raises(ValueError, match="horizon"):
        stack_problems([p, anil(T=T + 1).problem(tasks[1])])
    with pytest.raises(ValueError, match="weight shapes|model"):
        stack_problems([p, anil(sizes=(1, 8, 6, 1)).problem(tasks[1])])
    with pytest.raises(ValueError, match="optimizer"):
        stack_problems([p, anil(lr=0.02).problem(tasks[1])])
    model = anil_mlp((1, 8, 1), act=nn.Tanh).double()
    seeded = [ProblemLearner(model, mse, mse, hg.optim.sgd(lr=0.01), hg.Hypers(model="body"), horizon=T,
                             settings=hg.Settings(seed=i)).problem(t) for i, t in enumerate(tasks[:2])]
    with pytest.raises(ValueError, match="seed"):
        stack_problems(seeded)
    other = ANIL(anil_mlp((1, 8, 8, 1), act=nn.Tanh).double(), horizon=T)     # another learner: other losses
    with pytest.raises(ValueError, match="train_loss"):
        stack_problems([p, other.problem(tasks[1])])
    short = L.problem(sample(1, shots=5)[0])
    with pytest.raises(ValueError, match="equal shapes"):
        get("rmd")(stack_problems([p, short]), L.init_hparams())
    clipped = ANIL(anil_mlp((1, 8, 1), act=nn.Tanh).double(), horizon=T)
    clipped.optimizer = hg.optim.sgd(lr=0.01, clip=hg.optim.clip_by_norm(1.0))
    with pytest.raises(ValueError, match="clip"):
        stack_problems([clipped.problem(t) for t in tasks])
    with pytest.raises(TypeError, match="not stacked"):
        stack_problems([stack_problems([p])])
    with pytest.raises(ValueError, match="at least one"):
        stack_problems([])


def test_nonlinear_estimators_refuse_a_stacked_problem_and_name_why():
    tasks = SinusoidTasks(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=3)
    stacked = stack_problems([learner.problem(tasks.sample(g)) for _ in range(2)])
    lam = learner.init_hparams()
    for name in ("rmd", "truncated_rmd", "one_step", "first_order", "online_rmd", "drmad"):
        hg.estimate(name, stacked, lam, T=3, **({"K": 2} if name == "truncated_rmd" else {}))
    for name, opts in (("hyperdistill", {}), ("evograd", {}), ("fmd", {}), ("es", {}), ("pes", {}),
                       ("one_step", {"fd": 0.01})):
        with pytest.raises(ValueError, match="vectorized meta-batch.*sequentially"):
            hg.estimate(name, stacked, lam, T=3, **opts)


@pytest.mark.parametrize("est,init", [("rmd", "reptile"), ("one_step", "reptile"), ("first_order", "fomaml"),
                                      ("rmd", "maml"), ("online_rmd", "reptile")])
def test_meta_train_vectorized_equals_sequential(est, init):
    """meta_train(vectorize=True): λ, φ, the logged losses and the cost equal the sequential run's."""
    from hypergradient.drivers import meta_train
    out = []
    for vec in (False, True):
        torch.manual_seed(0)
        learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=4)
        lam = learner.init_hparams()
        res = meta_train(learner, est, lam, torch.optim.Adam(list(lam.values()), lr=0.01),
                         SinusoidTasks(dtype=torch.float64), iterations=3, meta_batch=4, init_update=init,
                         progress=False, vectorize=vec)
        out.append(res)
    a, b = out
    for k in a.hparams:
        torch.testing.assert_close(b.hparams[k], a.hparams[k], rtol=1e-10, atol=1e-13)
    for k in a.init:
        torch.testing.assert_close(b.init[k], a.init[k], rtol=1e-10, atol=1e-13)
    assert b.history["meta_val_loss"] == pytest.approx(a.history["meta_val_loss"], rel=1e-10)
    assert b.history["val_loss"] == pytest.approx(a.history["val_loss"], rel=1e-10, nan_ok=True)
    assert (b.cost.steps, b.cost.vjps) == (a.cost.steps, a.cost.vjps)       # a stacked step counts B steps
    with pytest.raises(ValueError, match="vectorize=True: evograd"):
        meta_train(learner, "evograd", lam, torch.optim.Adam(list(lam.values())), SinusoidTasks(), iterations=1,
                   vectorize=True, progress=False)


def test_timing_stacked_vs_sequential_rmd():
    """Not an assertion: the throughput of one stacked inner loop against B sequential ones (B = 10
    sinusoid ANIL tasks, the paper's 1-100-100-100-1 MLP, T = 30, float32, one thread)."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    try:
        n, steps = 10, 30
        L = ANIL(anil_mlp(), horizon=steps)
        tasks = sample(n, seed=1, dtype=torch.float32)
        lam, phi, est = L.init_hparams(), L.init_weights(), get("rmd")

        def sequential():
            for p in [L.problem(t) for t in tasks]:
                est(p, lam, state=p.init_state(phi))

        def stacked():
            p = stack_problems([L.problem(t) for t in tasks])
            est(p, lam, state=p.init_state(phi))

        times = {}
        for f in (sequential, stacked):
            f()
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                f()
                best = min(best, time.perf_counter() - t0)
            times[f.__name__] = best
        print(f"\nrmd, B={n}, T={steps}, float32, 1 thread: sequential {times['sequential'] * 1e3:.1f} ms, "
              f"stacked {times['stacked'] * 1e3:.1f} ms, speedup {times['sequential'] / times['stacked']:.2f}x")
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)


def test_lockstep_vectorized_equals_sequential():
    from hypergradient.drivers import lockstep
    tasks = SinusoidTasks(dtype=torch.float64)
    out = []
    for vec in (False, True):
        torch.manual_seed(0)
        learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=4)
        g = torch.Generator().manual_seed(0)
        ps = [learner.problem(tasks.sample(g)) for _ in range(3)]
        lam = learner.init_hparams()
        est = get("one_step")
        r = lockstep(ps, est, lam, torch.optim.Adam(list(lam.values()), lr=0.01), [p.init_state() for p in ps], 4,
                     est.new_state(), vectorize=vec)
        out.append((lam, r))
    (la, ra), (lb, rb) = out
    for k in la:
        torch.testing.assert_close(lb[k], la[k], rtol=1e-10, atol=1e-13)
    for sa, sb in zip(ra.states, rb.states):
        torch.testing.assert_close(sb.params[0], sa.params[0], rtol=1e-10, atol=1e-13)
    assert ra.outer_steps == rb.outer_steps == 4
