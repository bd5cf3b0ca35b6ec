"""Outer loops: the online driver, the sign-based outer optimizer, hypergradient descent (SGD-HD, Adam-HD)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.drivers import AdamHD, SGDHD, SignDescent, run_online
from hypergradient.estimators import Estimator, Hypergradient

from conftest import make_problem




def regression_problem(T: int = 15, l2: float = 1.0, nan_val_at: int | None = None):
    """Least squares on 12 clean-ish examples with an l2 penalty that starts far too strong
    (validation inputs all NaN at step ``nan_val_at``, if given)."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(5, 1, generator=g, dtype=torch.float64)
    X = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = X @ w_true + 0.05 * torch.randn(12, 1, generator=g, dtype=torch.float64)
    Xv = torch.randn(40, 5, generator=g, dtype=torch.float64)
    yv = Xv @ w_true
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False).double()

    def train(f, b, hp):
        return 0.5 * ((f(b[0]) - b[1]) ** 2).mean() + 0.5 * hp["l2"] * (f.params["weight"] ** 2).sum()

    def val(f, b, hp):
        return 0.5 * ((f(b[0]) - b[1]) ** 2).mean()

    return hg.InnerProblem(model, train, val, hg.optim.sgd(lr=0.2, momentum=0.5),
                           hg.Hypers(loss={"l2": Hyper(l2, positive="exp")}),
                           hg.Data([(X, y)], lambda t: (Xv * float("nan") if t == nan_val_at else Xv, yv)), horizon=T)


def val_after(problem, lam):
    s, _ = problem.run(problem.init_state(), {k: v.detach() for k, v in lam.items()}, problem.horizon)
    return problem.val_loss_at(s, lam).item()


# ---- the online driver ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,options", [("hyperdistill", {"gamma": 0.9}), ("one_step", {}), ("fmd", {}),
                                          ("evograd", {"sigma": 0.01, "temperature": 0.05, "population": 4})])
def test_online_driver_reduces_the_validation_loss(name, options):
    problem = regression_problem()
    lam = problem.init_hparams()
    start = val_after(problem, lam)
    res = run_online(problem, name, lam, torch.optim.Adam(lam.values(), lr=0.2), episodes=4, **options)
    end = val_after(problem, lam)
    assert end < 0.5 * start, (start, end)
    assert hg.estimators.base.REGISTRY[name].online
    assert len(res.history["val_loss"]) == 4 * problem.horizon               # λ updated at every inner step
    assert res.history["val_loss"][-1] < res.history["val_loss"][problem.horizon - 1]
    # (evograd's noise check takes its R extra estimates once, at the run's first step)
    extra = hg.estimators.evograd.NOISE_REDRAWS if name == "evograd" else 0
    assert all(v.grad is None for v in lam.values()) and res.cost.val_grads == 4 * problem.horizon + extra
    assert res.state.t == problem.horizon


def test_online_driver_with_sign_descent_and_lockstep_problems():
    problems = [regression_problem(), regression_problem()]
    lam = problems[0].init_hparams()
    start = val_after(problems[0], lam)
    res = run_online(problems, "one_step", lam, SignDescent(lam.values(), lr=0.3), episodes=3)
    assert val_after(problems[0], lam) < 0.5 * start
    assert len(res.states) == 2 and torch.equal(res.states[0].params[0], res.states[1].params[0])


def test_linear_decay_of_the_hyper_learning_rate():
    problem = regression_problem(T=4)
    lam = problem.init_hparams()
    res = run_online(problem, "first_order", lam, torch.optim.SGD(lam.values(), lr=0.8), episodes=2, lr_decay=True)
    want = [0.8 * (1 - k / 8) for k in range(8)]
    assert all(math.isclose(a, b) for a, b in zip(res.history["lr"], want))


def test_online_driver_errors():
    problem = regression_problem()
    lam = problem.init_hparams()
    outer = torch.optim.SGD(lam.values(), lr=0.1)
    with pytest.raises(ValueError, match="cannot drive online updates"):
        run_online(problem, "rmd", lam, outer)
    with pytest.raises(ValueError, match="does not hold the hyperparameters"):
        run_online(problem, "one_step", lam, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        run_online(problem, "one_step", lam, "adam")
    p2 = make_problem("sgd", dict(lr=Hyper(0.1)), T=3)
    lam2 = p2.init_hparams()
    with pytest.raises(ValueError, match="cannot differentiate optimizer hyperparameters"):
        run_online(p2, "evograd", lam2, torch.optim.SGD(lam2.values(), lr=0.1))
    with pytest.raises(ValueError, match="nonfinite"):
        run_online(problem, "one_step", lam, outer, nonfinite="ignore")


class NaNAtStep(Estimator):
    """An online estimator (test double) whose hypergradient is NaN in its first entry at one step."""

    name = "nan_at_step"
    online = True

    def __init__(self, bad: int, value: float = 1.0):
        super().__init__()
        self.bad, self.value = bad, value

    def start(self, problem, lam, state, est_state):
        return None

    def advance(self, problem, lam, state, carry):
        state = problem.step(state, lam)
        value = {k: torch.full_like(v, self.value) for k, v in lam.items()}
        if state.t == self.bad:
            k0 = next(iter(value))
            value[k0] = value[k0].clone()
            value[k0].view(-1)[0] = float("nan")
        zero = {k: torch.zeros_like(v) for k, v in lam.items()}
        return Hypergradient(value, zero, value, state=state), carry


def test_nonfinite_hypergradients():
    problem = regression_problem(T=3)
    lam = problem.init_hparams()
    with pytest.raises(FloatingPointError, match="non-finite"):
        run_online(problem, NaNAtStep(2), lam, torch.optim.SGD(lam.values(), lr=0.1))
    lam = problem.init_hparams()
    l0 = lam["loss.l2"].item()
    res = run_online(problem, NaNAtStep(2), lam, torch.optim.SGD(lam.values(), lr=0.1), nonfinite="skip")
    assert res.history["skipped"] == [False, True, False]
    assert math.isclose(lam["loss.l2"].item(), l0 - 0.2)
    lam = problem.init_hparams()
    res = run_online(problem, NaNAtStep(2), lam, SignDescent(lam.values(), lr=0.1))   # element-wise skip
    assert res.history["skipped"] == [False, False, False]
    assert math.isclose(lam["loss.l2"].item(), l0 - 0.2)


@pytest.mark.parametrize("name", ["one_step", "hyperdistill", "evograd"])
def test_nonfinite_policy_applies_to_registered_estimators(name):
    """A real estimator's NaN hypergradient (NaN validation data at step 2) reaches the driver's
    policy: raise by default, skip that outer step with nonfinite="skip"."""
    problem = regression_problem(T=3, nan_val_at=2)
    lam = problem.init_hparams()
    with pytest.raises(FloatingPointError, match="non-finite"):
        run_online(problem, name, lam, torch.optim.SGD(lam.values(), lr=0.1))
    lam = problem.init_hparams()
    res = run_online(problem, name, lam, torch.optim.SGD(lam.values(), lr=0.1), nonfinite="skip")
    assert res.history["skipped"] == [False, True, False]
    assert math.isfinite(lam["loss.l2"].item())


# ---- sign-based outer optimizer -----------------------------------------------------------------------
def test_sign_descent_halves_on_flips_and_skips_nan():
    lam = torch.zeros(4, requires_grad=True)
    opt = SignDescent([lam], lr=0.1)
    steps = [torch.tensor([1.0, 1.0, 2.0, 0.0]),
             torch.tensor([-1.0, 3.0, float("nan"), 1.0]),     # flip / same / NaN / first sign
             torch.tensor([-5.0, 1.0, -1.0, 0.0]),            # same / same / flip vs the sign before the NaN / zero
             torch.tensor([2.0, -1.0, float("inf"), -1.0])]   # flip / flip / inf / flip
    for g in steps:
        lam.grad = g
        opt.step()
    want = torch.tensor([-0.1 + 0.05 + 0.05 - 0.025,
                         -0.1 - 0.1 - 0.1 + 0.05,
                         -0.1 + 0.05,
                         -0.1 + 0.05])
    torch.testing.assert_close(lam.detach(), want)
    assert torch.equal(opt.state[lam]["sign"], torch.tensor([1.0, -1.0, -1.0, -1.0]))
    torch.testing.assert_close(opt.state[lam]["scale"], torch.tensor([0.25, 0.5, 0.5, 0.5]))
    with pytest.raises(ValueError):
        SignDescent([lam], lr=-1)


# ---- hypergradient descent -------------------------------------------------------------------------------
def quadratic():
    A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    return lambda th: 0.5 * th @ A @ th


def _hd_gradient_and_lr(f, ref, alpha, d_prev, beta):
    """∇f at the reference point and the learning rate α_t = α_{t−1} + β ∇f(θ_{t−1})·d_{t−1}."""
    r = ref.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(r), r)
    return g, (alpha if d_prev is None else alpha + beta * float(g @ d_prev))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.5, False), (0.5, True)])
def test_sgd_hd_matches_its_recursion(momentum, nesterov):
    f = quadratic()
    th = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = SGDHD([th], lr=0.05, hypergrad_lr=0.01, momentum=momentum, nesterov=nesterov)
    ref, alpha, d_prev, v = th.detach().clone(), 0.05, None, None
    alphas = []
    for _ in range(6):
        opt.zero_grad()
        f(th).backward()
        opt.step()
        g, alpha = _hd_gradient_and_lr(f, ref, alpha, d_prev, 0.01)
        if momentum:
            v = g if v is None else momentum * v + g
            d = g + momentum * v if nesterov else v
        else:
            d = g
        ref, d_prev = ref - alpha * d, d
        alphas.append(alpha)
        torch.testing.assert_close(th.detach(), ref, rtol=1e-12, atol=1e-14)
        assert math.isclose(opt.param_groups[0]["lr"], alpha, rel_tol=1e-12)
    if momentum == 0:
        assert alphas[-1] > alphas[0]   # consecutive gradients agree on a well-conditioned bowl: α grows


def test_adam_hd_matches_its_recursion():
    f = quadratic()
    th = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    b1, b2, eps, beta = 0.9, 0.999, 1e-8, 1e-3
    opt = AdamHD([th], lr=0.01, hypergrad_lr=beta, betas=(b1, b2), eps=eps)
    ref, alpha, d_prev = th.detach().clone(), 0.01, None
    m = v = torch.zeros(2, dtype=torch.float64)
    for t in range(1, 7):
        opt.zero_grad()
        f(th).backward()
        opt.step()
        g, alpha = _hd_gradient_and_lr(f, ref, alpha, d_prev, beta)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        d = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        ref, d_prev = ref - alpha * d, d
        torch.testing.assert_close(th.detach(), ref, rtol=1e-12, atol=1e-14)
        assert math.isclose(opt.param_groups[0]["lr"], alpha, rel_tol=1e-12)


def test_hd_as_outer_optimizer():
    problem = regression_problem()
    lam = problem.init_hparams()
    start = val_after(problem, lam)
    run_online(problem, "one_step", lam, AdamHD(lam.values(), lr=0.2, hypergrad_lr=1e-3), episodes=3)
    assert val_after(problem, lam) < 0.5 * start
    with pytest.raises(ValueError):
        SGDHD(lam.values(), lr=0.1, nesterov=True)
