"""HyperDistill (ALGORITHMS.md §6): reductions to 1-step lookahead and exact RMD, the recursions of
Eqs. 12–13 and 17, the distilled dataset of Eq. 14, LinearEstimation, and the zero-direct rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.estimators import get
from hypergradient.estimators.hyperdistill import (backward_weight, distill_batch, forward_weight, geometric_sum,
                                                   linear_estimation, subsample)

from conftest import ce_l2, make_problem, rel_err

T = 6




def online(est, problem, lam, steps, state=None):
    state = problem.init_state() if state is None else state
    carry = est.online_init(problem, lam, state, est.new_state())
    out = []
    for _ in range(steps):
        h, carry = est.online_step(problem, lam, state, carry)
        state = h.state
        out.append(h)
    return out, carry


PROBLEMS = {
    # λ in both losses (direct term non-zero) and SGD with momentum: the optimizer state matters
    "sgd": lambda: make_problem("sgd", dict(lr=0.3, momentum=0.8), train_loss=ce_l2, val_loss=ce_l2,
                                loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T),
    # learned optimizer hyperparameters and Adam's moments
    "adam": lambda: make_problem("adam", dict(lr=Hyper(0.05, positive="softplus"), beta1=Hyper(0.8)),
                                 train_loss=ce_l2, loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T),
}


# ---- reductions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pname", list(PROBLEMS))
def test_gamma0_theta1_is_one_step(pname):
    """γ = 0 gives w*_t = w_{t−1}, D*_t = D_t and scale θ·S_t = 1: exactly 1-step lookahead, bit for bit."""
    problem = PROBLEMS[pname]()
    lam = problem.init_hparams()
    hd, _ = online(get("hyperdistill", gamma=0.0, theta=1.0, zero_direct="fit"), problem, lam, T)
    one, _ = online(get("one_step"), problem, lam, T)
    for a, b in zip(hd, one):
        for k in lam:
            assert torch.equal(a.value[k], b.value[k]), k
        assert a.cost == b.cost == hg.Cost(steps=1, vjps=1, val_grads=1)
    off = hg.estimate("hyperdistill", problem, lam, gamma=0.0, theta=1.0, zero_direct="fit")
    ref = hg.estimate("one_step", problem, lam)
    assert all(torch.equal(off.value[k], ref.value[k]) for k in lam)


def gamma_identity_problem(gamma: float, h: float = 2.0, d: int = 3, T: int = 7):
    """L_train = h/2 ‖w‖² + ⟨w, tanh(a ⊙ x̄)⟩ with a = λ: ∇_w L_train = h w + c(λ), so SGD with
    lr = (1 − γ)/h has step Jacobian ∂Φ/∂w = (1 − lr h) I = γ I exactly, and ∂Φ/∂λ does not depend on w.
    Every example of the batch is the same row, so any subsample D* gives the same x̄ (and B)."""
    class Vec(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.linspace(-1.0, 1.0, d, dtype=torch.float64))

        def forward(self, x):
            return x * self.w

    row = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)[:d]
    X = row.expand(8, d).clone()
    target = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)[:d]

    def train(f, b, hp):
        w = f.params["w"]
        return 0.5 * h * (w ** 2).sum() + (w * torch.tanh(hp["a"] * b[0].mean(0))).sum()

    def val(f, b, hp):
        return ((f.params["w"] - target) ** 2).sum() + 0.1 * (hp["a"] ** 2).sum()

    lr = (1.0 - gamma) / h
    return hg.InnerProblem(Vec().double(), train, val, hg.optim.sgd(lr=lr),
                           hg.Hypers(loss={"a": torch.tensor([0.5, -0.4, 1.2], dtype=torch.float64)[:d]}),
                           hg.Data([(X,)], (X,)), horizon=T)


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_gamma_identity_step_is_exact_rmd(gamma):
    """On a problem whose step Jacobian is exactly γI (and B_t constant), LinearEstimation returns θ = 1
    and the online HyperDistill hypergradient equals exact RMD over the horizon t at every t."""
    problem = gamma_identity_problem(gamma)
    lam = problem.init_hparams()
    theta, info = linear_estimation(problem, lam, problem.init_state(), problem.horizon, gamma,
                                    generator=torch.Generator().manual_seed(0))
    assert abs(theta - 1.0) < 1e-10 and not info["degenerate"]
    assert info["cost"] == hg.Cost(steps=problem.horizon, vjps=2 * problem.horizon, val_grads=1)
    est = get("hyperdistill", gamma=gamma)
    hs, carry = online(est, problem, lam, problem.horizon)
    assert carry.mode == "fit" and abs(carry.theta - 1.0) < 1e-10
    for t, h in enumerate(hs, 1):
        ref = hg.estimate("rmd", problem, lam, T=t)
        assert rel_err(h.value, ref.value) < 1e-10, t
        assert rel_err(h.indirect, ref.indirect) < 1e-10, t
    # LinearEstimation's cost is charged to the first step of the inner optimization that ran it
    assert hs[0].cost == hg.Cost(steps=1 + problem.horizon, vjps=1 + 2 * problem.horizon, val_grads=2)
    assert "linear_estimation" in hs[0].info and "linear_estimation" not in hs[1].info
    off = hg.estimate("hyperdistill", problem, lam, gamma=gamma)
    assert rel_err(off.value, hg.estimate("rmd", problem, lam).value) < 1e-10


def test_identity_problem_is_not_trivial():
    """The reduction above is not vacuous: with γ mis-set the hypergradient differs from RMD."""
    problem = gamma_identity_problem(0.9)
    lam = problem.init_hparams()
    wrong = hg.estimate("hyperdistill", problem, lam, gamma=0.5, theta=1.0)
    assert rel_err(wrong.value, hg.estimate("rmd", problem, lam).value) > 1e-3


# ---- the recursions ------------------------------------------------------------------------------------
def test_weights():
    assert geometric_sum(0.9, 0) == 0 and geometric_sum(0.0, 5) == 1 and geometric_sum(1.0, 4) == 4
    assert math.isclose(geometric_sum(0.9, 3), 1 + 0.9 + 0.81)
    for g in (0.0, 0.3, 0.99, 1.0):
        assert forward_weight(g, 1) == 0 and backward_weight(g, 1) == 0
        for k in range(2, 6):
            if g < 1:
                assert math.isclose(forward_weight(g, k), (g - g ** k) / (1 - g ** k), abs_tol=1e-15)
                assert math.isclose(backward_weight(g, k), (1 - g ** (k - 1)) / (1 - g ** k), abs_tol=1e-15)
            else:
                assert math.isclose(forward_weight(g, k), (k - 1) / k)


@pytest.mark.parametrize("gamma", [0.3, 0.9, 1.0])
@pytest.mark.parametrize("distill_opt_state", [True, False])
def test_recursion_is_the_weighted_average(gamma, distill_opt_state):
    """Eq. 13's online recursion equals Eq. 12: s*_k = Σ_i γ^{k−i} s_{i−1} / Σ_i γ^{k−i} (w and momentum)."""
    problem = PROBLEMS["sgd"]()
    lam = problem.init_hparams()
    est = get("hyperdistill", gamma=gamma, theta=1.0, distill_opt_state=distill_opt_state)
    state = problem.init_state()
    carry = est.online_init(problem, lam, state)
    trajectory = []
    for k in range(1, 8):
        trajectory.append(state.tensors())
        h, carry = est.online_step(problem, lam, state, carry)
        state = h.state
        weights = torch.tensor([gamma ** (k - i) for i in range(1, k + 1)], dtype=torch.float64)
        weights = weights / weights.sum()
        n = len(state.params)
        for j, got in enumerate(carry.star):
            if j >= n and not distill_opt_state:
                want = trajectory[-1][j]
            else:
                want = sum(wi * s[j] for wi, s in zip(weights, trajectory))
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gamma", [0.5, 0.95])
def test_backward_recursion_is_the_weighted_average(gamma):
    """Eq. 17: w*_s = q_s w*_{s−1} + (1 − q_s) w_{T−s} equals Σ_{i=1..s} γ^{i−1} w_{T−i} / S_s."""
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(9)]   # w_{T−1}, w_{T−2}, ...
    star = ws[0]
    for s in range(2, 10):
        q = backward_weight(gamma, s)
        star = q * star + (1 - q) * ws[s - 1]
        want = sum(gamma ** (i - 1) * ws[i - 1] for i in range(1, s + 1)) / geometric_sum(gamma, s)
        torch.testing.assert_close(star, want, rtol=1e-12, atol=1e-14)


# ---- the distilled dataset -----------------------------------------------------------------------------
def test_subsample_and_union():
    g = torch.Generator().manual_seed(0)
    a = (torch.arange(10.0), torch.arange(10) + 100)
    b = (torch.arange(10.0) + 50, torch.arange(10) + 150)
    assert subsample(a, 1.0, g) is a and subsample(a, 0.0, g) is None and subsample(a, 0.04, g) is None
    half = subsample(a, 0.35, g)                             # round(3.5) = 4 (round half up)
    assert len(half[0]) == 4 and torch.equal(half[1], half[0].long() + 100)   # rows stay aligned
    assert bool((half[0][1:] > half[0][:-1]).all())          # original order kept
    assert distill_batch(a, b, 0.0, g) is b
    d = distill_batch(a, b, 0.7, g)                          # 7 from a, 3 from b
    assert len(d[0]) == 10 and int((d[0] < 50).sum()) == 7
    dd = distill_batch({"x": a[0]}, {"x": b[0]}, 0.5, g)
    assert len(dd["x"]) == 10
    with pytest.raises(TypeError, match="tensors"):
        subsample((torch.zeros(3), "label"), 0.5, g)
    with pytest.raises(ValueError, match="leading batch dimension"):
        subsample((torch.zeros(3), torch.zeros(4)), 0.5, g)


def test_stochastic_rounding_keeps_taking_new_examples():
    """With round-half-up a 4-example batch stops absorbing new data once 4(1 − p) < 0.5; the
    stochastic rounding keeps the expected share 1 − p."""
    g = torch.Generator().manual_seed(0)
    new = (torch.ones(4),)
    near = sum(int(distill_batch((torch.zeros(4),), new, 0.9, g)[0].sum()) for _ in range(200))
    stoch = sum(int(distill_batch((torch.zeros(4),), new, 0.9, g, "stochastic")[0].sum()) for _ in range(400))
    assert near == 0 and abs(stoch / 400 - 0.4) < 0.1


def test_distilled_dataset_mixes_past_batches():
    problem = PROBLEMS["sgd"]()                               # two batches of 8, cycled
    lam = problem.init_hparams()
    hs, carry = online(get("hyperdistill", gamma=0.9, theta=1.0), problem, lam, 5)
    assert [h.info["distilled_size"] for h in hs] == [8] * 5
    X = torch.cat([problem.train_batch(1)[0], problem.train_batch(2)[0]])
    rows = carry.dstar[0]
    from_first = sum(bool((X[:8] == r).all(1).any()) for r in rows)
    assert 0 < from_first < 8                                 # examples of both batches
    again, _ = online(get("hyperdistill", gamma=0.9, theta=1.0), problem, lam, 5)
    assert all(torch.equal(a.flat(), b.flat()) for a, b in zip(hs, again))   # seeded: reproducible


# ---- θ and the scale -----------------------------------------------------------------------------------
def test_zero_direct_fixes_the_scale_to_one():
    """λ only in the training loss (the Meta-Weight-Net case): no LinearEstimation, g_t = v_t."""
    problem = make_problem("sgd", dict(lr=0.3, momentum=0.8), train_loss=ce_l2,
                           loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T)
    lam = problem.init_hparams()
    hs, carry = online(get("hyperdistill", gamma=0.9), problem, lam, T)
    assert carry.mode == "unit" and all(h.info["scale"] == 1.0 for h in hs)
    assert all(h.cost == hg.Cost(steps=1, vjps=1, val_grads=1) for h in hs)
    assert all(not h.direct["loss.l2"].any() for h in hs)
    fit, carry = online(get("hyperdistill", gamma=0.9, zero_direct="fit"), problem, lam, T)
    assert carry.mode == "fit" and fit[0].cost.vjps == 1 + 2 * T
    for a, b in zip(hs, fit):   # same direction, different size
        torch.testing.assert_close(b.value["loss.l2"], a.value["loss.l2"] * b.info["scale"])
    norm, _ = online(get("hyperdistill", gamma=0.9, zero_direct="normalized"), problem, lam, T)
    assert all(abs(h.value["loss.l2"].abs().item() - 1.0) < 1e-12 for h in norm)


def test_theta_is_refreshed_every_period():
    problem = PROBLEMS["sgd"]()
    lam = problem.init_hparams()
    est = get("hyperdistill", gamma=0.9, period=2)
    ran = []
    memory = est.new_state()
    for episode in range(5):
        carry = est.online_init(problem, lam, problem.init_state(), memory)
        ran.append(carry.estimation is not None)
    assert ran == [True, False, True, False, True] and memory.episodes == 5
    assert math.isfinite(memory.theta) and carry.theta == memory.theta
    fresh = est.new_state()
    assert fresh.episodes == 0 and fresh.theta is None


# ---- safeguards (issue 15): options, each a departure; the defaults are the paper's algorithm ---------
def _episodes(est, problems, memory):
    """online_init on each problem in turn; the θ each inner optimization uses and the fits' (x, y)."""
    thetas, fits = [], []
    for problem in problems:
        lam = problem.init_hparams()
        carry = est.online_init(problem, lam, problem.init_state(), memory)
        thetas.append(carry.theta)
        fits.append(carry.estimation)
    return thetas, fits


def _tasks(n):
    return [make_problem("sgd", dict(lr=0.3, momentum=0.8), train_loss=ce_l2, val_loss=ce_l2, data_seed=i,
                         loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T) for i in range(n)]


def test_joint_fit_pools_the_regressions_of_a_meta_batch():
    """joint=3: the first three inner optimizations of a round each fit, and θ is the regression over
    all samples so far, Σ xy / Σ xx; the next ones reuse it until the period's refit."""
    problems = _tasks(5)
    est = get("hyperdistill", gamma=0.9, joint=3, period=4)
    thetas, fits = _episodes(est, problems, est.new_state())
    assert [f is not None for f in fits] == [True, True, True, False, True]
    for n in (1, 2, 3):
        x = torch.cat([f["x"] for f in fits[:n]])
        y = torch.cat([f["y"] for f in fits[:n]])
        assert thetas[n - 1] == pytest.approx(float((x * y).sum() / (x * x).sum()), rel=1e-12)
    assert thetas[3] == thetas[2] and thetas[4] == pytest.approx(fits[4]["theta"], rel=1e-12)
    paper, _ = _episodes(get("hyperdistill", gamma=0.9, period=4), problems, get("hyperdistill").new_state())
    assert paper[0] == pytest.approx(fits[0]["theta"]) and paper[1] == paper[0]    # joint=1: one fit a period


def test_theta_smoothing_and_range():
    problems = _tasks(2)
    plain, fits = _episodes(get("hyperdistill", gamma=0.9, period=1), problems, get("hyperdistill").new_state())
    smooth, _ = _episodes(get("hyperdistill", gamma=0.9, period=1, theta_smoothing=0.75), problems,
                          get("hyperdistill").new_state())
    assert smooth[0] == plain[0]                                   # nothing to smooth with at the first fit
    assert smooth[1] == pytest.approx(0.75 * smooth[0] + 0.25 * fits[1]["theta"], rel=1e-12)
    lo, hi = sorted(plain)
    mid = (lo + hi) / 2
    clipped, _ = _episodes(get("hyperdistill", gamma=0.9, period=1, theta_range=(mid, mid + 1e-3)), problems,
                           get("hyperdistill").new_state())
    assert all(mid <= c <= mid + 1e-3 for c in clipped)


def test_subsampling_off_distills_the_current_batch():
    problem = PROBLEMS["adam"]()                              # λ holds lr: ∂Φ/∂λ depends on the data
    lam = problem.init_hparams()
    hs, carry = online(get("hyperdistill", gamma=0.9, theta=1.0, subsample=False), problem, lam, 5)
    assert torch.equal(carry.dstar[0], problem.train_batch(5)[0])
    on, _ = online(get("hyperdistill", gamma=0.9, theta=1.0), problem, lam, 5)
    assert not all(torch.equal(a.flat(), b.flat()) for a, b in zip(hs, on))


def test_safeguard_defaults_are_the_paper():
    est = get("hyperdistill")
    assert (est.joint, est.theta_smoothing, est.theta_range, est.subsample) == (1, 0.0, None, True)
    for bad in (dict(joint=0), dict(theta_smoothing=1.0), dict(theta_range=(2.0, 1.0)), dict(joint=60)):
        with pytest.raises(ValueError):
            get("hyperdistill", **bad)


def test_options_are_validated():
    for bad in (dict(gamma=1.5), dict(gamma=-0.1), dict(period=0), dict(rounding="up"),
                dict(zero_direct="zero"), dict(theta=float("nan")), dict(T_estimate=0)):
        with pytest.raises(ValueError):
            get("hyperdistill", **bad)
    problem = make_problem("sgd", dict(lr=0.3), train_loss=ce_l2, val_loss=ce_l2, loss_hparams={"l2": 0.01}, T=None)
    lam = problem.init_hparams()
    with pytest.raises(ValueError, match="horizon"):
        get("hyperdistill").online_init(problem, lam, problem.init_state())
