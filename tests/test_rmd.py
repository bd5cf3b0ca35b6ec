"""Reverse-mode hypergradients (ALGORITHMS.md §1) against central finite differences, against the
closed form for ridge regression trained by gradient descent, and across storage policies."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.optim import OPTIMIZERS

from conftest import AGREE_RTOL, STORAGES, assert_fd_close, fd_grad, make_problem, rel_err, val_after

T = 5

# ---- every optimizer × every learnable hyperparameter × every granularity ---------------------------
# Values in the constrained space, all > 0 so that every positivity transform applies.
VALUES = {
    "sgd": dict(lr=0.3, momentum=0.8, dampening=0.2, weight_decay=0.05),
    "adam": dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-2, weight_decay=0.05),
    "adamw": dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-2, weight_decay=0.1),
    "rmsprop": dict(lr=0.02, alpha=0.9, eps=1e-2, weight_decay=0.05, momentum=0.5),
    "adagrad": dict(lr=0.1, lr_decay=0.1, weight_decay=0.05, eps=1e-2),
    "adadelta": dict(lr=0.5, rho=0.8, eps=1e-2, weight_decay=0.05),
    "adamax": dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-2, weight_decay=0.05),
    "asgd": dict(lr=0.2, lambd=0.1, alpha=0.75, weight_decay=0.05),
    # the step-size bounds bind from step 2 (0.05 · 1.2 > 0.055 and 0.05 · 0.5 < 0.04), so they are learned too
    "rprop": dict(lr=0.05, etaminus=0.5, etaplus=1.2, step_size_min=0.04, step_size_max=0.055),
    "nadam": dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-2, weight_decay=0.05, momentum_decay=0.1),
    "radam": dict(lr=0.05, beta1=0.8, beta2=0.9, eps=1e-2, weight_decay=0.05),
}
VARIANTS = [("sgd", {}), ("sgd", {"nesterov": True}), ("adam", {}), ("adam", {"amsgrad": True}),
            ("adamw", {}), ("adamw", {"amsgrad": True}), ("rmsprop", {}), ("rmsprop", {"centered": True}),
            ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.1}),
            ("adam", {"decoupled_weight_decay": True}), ("adam", {"maximize": True}), ("sgd", {"maximize": True}),
            ("adadelta", {}), ("adamax", {}), ("asgd", {}), ("asgd", {"t0": 2.0}), ("rprop", {}),
            ("nadam", {}), ("nadam", {"decoupled_weight_decay": True}), ("radam", {}),
            ("radam", {"decoupled_weight_decay": True})]
GRANULARITIES = {
    "scalar": lambda v: Hyper(v),
    "tensor": lambda v: Hyper(v, "tensor"),
    "element": lambda v: Hyper(v, "element"),
    "schedule": lambda v: Hyper(v, schedule=3),             # steps use values 0 0 1 1 2
    "block": lambda v: Hyper(v, "tensor", block=4),         # ceil(5 / 4) = 2 values: 4 steps, then 1
    "softplus": lambda v: Hyper(v, schedule=2, positive="softplus"),
    "exp": lambda v: Hyper(v, "tensor", positive="exp"),
}
GNAMES = list(GRANULARITIES)


def _cases():
    """Hyperparameter i of the optimizer gets granularity (i + r) mod 7 in rotation r, so the rotations
    cover every (optimizer, hyperparameter, granularity) triple with all hyperparameters learned at
    once. Option variants (nesterov, amsgrad, centered, initial accumulator) change the update, not how
    hyperparameters are resolved, so two rotations (every hyperparameter at two granularities) suffice."""
    cases = []
    for name, opts in VARIANTS:
        for r in (range(len(GNAMES)) if not opts else (0, 3)):
            spec = {h: GNAMES[(i + r) % len(GNAMES)] for i, h in enumerate(VALUES[name])}
            tag = "-".join(f"{k}={v}" for k, v in opts.items())
            cases.append(pytest.param(name, opts, spec, id=f"{name}{'-' + tag if tag else ''}-r{r}"))
    return cases


def test_every_optimizer_and_hyperparameter_is_covered():
    assert set(VALUES) == set(OPTIMIZERS)
    for name, cls in OPTIMIZERS.items():
        assert set(VALUES[name]) == set(cls.hparam_names)
    covered = {(c.values[0], h, g) for c in _cases() if not c.values[1] for h, g in c.values[2].items()}
    assert covered == {(n, h, g) for n in VALUES for h in VALUES[n] for g in GNAMES}


def _rmd_all(pb, lam, **kw):
    out = {st: hg.estimate("rmd", pb, lam, storage=st, **kw) for st in STORAGES}
    for st in ("recompute", "checkpoint"):
        assert rel_err(out[st].value, out["graph"].value) < AGREE_RTOL, st
    return out


def _rmd_all_match_fd(pb, lam):
    """RMD under every storage policy, each checked against central finite differences."""
    res = _rmd_all(pb, lam)
    fd = fd_grad(val_after(pb), lam)
    for h in res.values():
        assert_fd_close(h.value, fd)
    return res


@pytest.mark.parametrize("name,opts,spec", _cases())
def test_rmd_matches_finite_differences(name, opts, spec):
    hparams = {h: GRANULARITIES[g](VALUES[name][h]) for h, g in spec.items()}
    if opts.get("nesterov"):   # dampening > 0 is outside torch.optim's domain; the update stays differentiable
        hparams = {h: dataclasses.replace(v, bounds=None) for h, v in hparams.items()}
    if name == "rprop":
        # A step clamped to a bound is carried unchanged by the sign-0 step after a sign flip; where the
        # bound is scheduled, the next window's equal bound then ties with it (max(lo_0, lo_1)), a kink
        # central differences cannot resolve. Distinct values per window keep the point smooth.
        for h in ("step_size_min", "step_size_max"):
            k = {"schedule": 3, "block": 2, "softplus": 2}.get(spec[h])
            if k:
                hparams[h] = dataclasses.replace(hparams[h], init=VALUES[name][h] * (1 + 0.1 * torch.arange(k)))
    pb = make_problem(name, hparams, T=T, options=opts)
    lam = pb.init_hparams()
    res = _rmd_all_match_fd(pb, lam)
    for st, h in res.items():
        assert h.cost.steps >= T and (h.cost.vjps == (0 if st == "graph" else T))


@pytest.mark.parametrize("gran", ["scalar", "element"])
def test_radam_rectified_branch_matches_finite_differences(gran):
    """RAdam's rectification starts once ρ_t > 5 (t ≥ 6 or so for any β2): T = 9 covers both branches;
    a learned element-wise β2 takes the branch element by element (torch.where)."""
    pb = make_problem("radam", {"lr": Hyper(0.05, gran), "beta2": Hyper(0.9, gran), "eps": Hyper(1e-2)}, T=9)
    _rmd_all_match_fd(pb, pb.init_hparams())


# ---- loss hyperparameters, hyperparameter modules, model parts (ANIL) ---------------------------------
def _l2(f):
    return sum((p ** 2).sum() for p in f.params.values())


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_loss_hparams(opt):
    """An L2 coefficient (exp-parametrized), per-class loss weights (a vector), and a temperature used
    by both losses (so the direct term is non-zero)."""
    def train_loss(f, b, hp):
        x, y = b
        per = F.cross_entropy(f(x) / hp["temp"], y, reduction="none")
        return (hp["cw"][y] * per).mean() + hp["l2"] * _l2(f)

    def val_loss(f, b, hp):
        return F.cross_entropy(f(b[0]) / hp["temp"], b[1])

    hps = {"lr": 0.3, "momentum": 0.5} if opt == "sgd" else {"lr": 0.05}
    pb = make_problem(opt, hps, train_loss=train_loss, val_loss=val_loss,
                      loss_hparams={"l2": Hyper(1e-2, positive="exp"), "cw": torch.tensor([1.0, 0.7, 1.3]),
                                    "temp": Hyper(1.5, positive="softplus")})
    lam = pb.init_hparams()
    res = _rmd_all_match_fd(pb, lam)
    for h in res.values():
        assert h.direct["loss.temp"].abs() > 0 and h.indirect["loss.temp"].abs() > 0
        assert torch.equal(h.direct["loss.l2"], torch.zeros(()))


def test_hparam_module():
    """A tiny loss-weighting net (Meta-Weight-Net style) whose parameters are λ. Its input is the
    per-example loss *not* detached: with ``per.detach()`` the step's value depends on w in a way
    autograd does not see, so no reverse-mode estimate can equal finite differences."""
    torch.manual_seed(1)
    mwn = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1), nn.Sigmoid()).double()

    def train_loss(f, b, hp):
        per = F.cross_entropy(f(b[0]), b[1], reduction="none")
        return (hp["mwn"](per[:, None]).squeeze(-1) * per).mean()

    pb = make_problem("sgd", {"lr": 0.5, "momentum": 0.5}, train_loss=train_loss, hparam_modules={"mwn": mwn})
    lam = pb.init_hparams()
    assert sorted(lam) == sorted(f"loss.mwn.{n}" for n, _ in mwn.named_parameters())
    _rmd_all_match_fd(pb, lam)


class ANILNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_model_hparams_anil(opt):
    """ANIL: the body is λ, the head is w; the validation loss depends on λ directly too."""
    hps = {"lr": 0.3, "momentum": 0.9} if opt == "sgd" else {"lr": Hyper(0.05)}
    pb = make_problem(opt, hps, model=ANILNet().double(), model_hparams="body")
    assert pb.names == ("head.weight", "head.bias")
    lam = pb.init_hparams()
    res = _rmd_all_match_fd(pb, lam)
    for h in res.values():
        assert h.direct["model.body.0.weight"].norm() > 0 and h.indirect["model.body.0.weight"].norm() > 0


# ---- closed form: ridge regression trained by T steps of gradient descent ---------------------------
class Ridge:
    """L_train(w) = ‖Xw − y‖²/(2n) + (λ/2)‖w‖², GD from w_0 with step η:

        w_t = M w_{t−1} + η b,   M = I − ηA,   A = XᵀX/n + λI,   b = Xᵀy/n
        w_T = M^T w_0 + η Σ_{k<T} M^k b

    A, M and dM/dθ (−ηI for λ, −A for η) commute, so d(M^k)/dθ = k M^{k−1} dM/dθ and

        dw_T/dλ = −ηT M^{T−1} w_0 − η² Σ_{k<T} k M^{k−1} b
        dw_T/dη = −T A M^{T−1} w_0 + Σ_{k<T} M^k b − η Σ_{k<T} k A M^{k−1} b

    and dL_val/dθ = ((X_v w_T − y_v)ᵀ X_v / n_v) dw_T/dθ with L_val = ‖X_v w − y_v‖²/(2 n_v)."""

    def __init__(self, n=20, d=3, nv=15, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.X, self.Xv = torch.randn(n, d, generator=g), torch.randn(nv, d, generator=g)
        w_true = torch.randn(d, generator=g)
        self.y = self.X @ w_true + 0.3 * torch.randn(n, generator=g)
        self.yv = self.Xv @ w_true + 0.3 * torch.randn(nv, generator=g)
        self.w0 = torch.randn(d, generator=g)

    def closed_form(self, lam, eta, T):
        n, d = self.X.shape
        I = torch.eye(d)
        A = self.X.T @ self.X / n + lam * I
        b = self.X.T @ self.y / n
        M = I - eta * A
        P = [torch.linalg.matrix_power(M, k) for k in range(T + 1)]
        wT = P[T] @ self.w0 + eta * sum(P[k] @ b for k in range(T))
        dlam = -eta * T * P[T - 1] @ self.w0 - eta ** 2 * sum(k * P[k - 1] @ b for k in range(1, T))
        deta = -T * A @ P[T - 1] @ self.w0 + sum(P[k] @ b for k in range(T)) \
            - eta * sum(k * A @ P[k - 1] @ b for k in range(1, T))
        alpha = (self.Xv @ wT - self.yv) @ self.Xv / self.Xv.shape[0]
        return wT, alpha @ dlam, alpha @ deta

    def problem(self, T, *, lam_as, lam, eta, learn_eta):
        model = nn.Linear(self.X.shape[1], 1, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(self.w0[None])

        def mse(f, b, hp):
            x, y = b
            return ((f(x).squeeze(-1) - y) ** 2).mean() / 2

        if lam_as == "loss":
            def train_loss(f, b, hp):
                return mse(f, b, hp) + hp["l2"] / 2 * (f.params["weight"] ** 2).sum()
            hparams, loss_hparams = {}, {"l2": Hyper(lam)}
        else:  # SGD's coupled weight decay: g + λw is the same gradient
            train_loss, loss_hparams = mse, None
            hparams = {"weight_decay": Hyper(lam)}
        hparams["lr"] = Hyper(eta) if learn_eta else eta
        return hg.InnerProblem(model, train_loss, mse, hg.optim.sgd(**hparams), hg.Hypers(loss=loss_hparams),
                               hg.Data([(self.X, self.y)], (self.Xv, self.yv)), horizon=T)


@pytest.mark.parametrize("lam_as", ["loss", "weight_decay"])
@pytest.mark.parametrize("storage", STORAGES)
def test_ridge_closed_form(lam_as, storage):
    ridge, T, lam, eta = Ridge(), 8, 0.3, 0.2
    wT, d_lam, d_eta = ridge.closed_form(lam, eta, T)
    pb = ridge.problem(T, lam_as=lam_as, lam=lam, eta=eta, learn_eta=True)
    h = hg.estimate("rmd", pb, pb.init_hparams(), storage=storage)
    torch.testing.assert_close(h.state.params[0][0], wT, atol=1e-13, rtol=0)
    key = "loss.l2" if lam_as == "loss" else "optim.weight_decay"
    assert abs(h.value[key].item() - d_lam.item()) < 1e-10 * abs(d_lam.item())
    assert abs(h.value["optim.lr"].item() - d_eta.item()) < 1e-10 * abs(d_eta.item())
    assert abs(d_lam.item()) > 1e-3 and abs(d_eta.item()) > 1e-3  # a non-trivial check


def test_ridge_closed_form_long_horizon():
    """T = 40 steps with η alone learned: matrix powers stay the oracle."""
    ridge, T, lam, eta = Ridge(seed=3), 40, 0.1, 0.3
    _, d_lam, d_eta = ridge.closed_form(lam, eta, T)
    pb = ridge.problem(T, lam_as="loss", lam=lam, eta=eta, learn_eta=True)
    h = hg.estimate("rmd", pb, pb.init_hparams(), storage="checkpoint", every=7)
    assert abs(h.value["optim.lr"].item() - d_eta.item()) < 1e-9 * abs(d_eta.item())
    assert abs(h.value["loss.l2"].item() - d_lam.item()) < 1e-9 * abs(d_lam.item())


# ---- storage policies and truncation -----------------------------------------------------------------
def _mixed_problem(T=7, **kw):
    return make_problem("adam", {"lr": Hyper(0.05, "tensor", schedule=3), "beta1": Hyper(0.8),
                                 "weight_decay": Hyper(0.05, "element")}, T=T,
                        loss_hparams={"l2": Hyper(1e-2, positive="exp")},
                        train_loss=lambda f, b, hp: F.cross_entropy(f(b[0]), b[1]) + hp["l2"] * _l2(f), **kw)


@pytest.mark.parametrize("every", [1, 2, 3, 7, 10])
def test_checkpoint_intervals_agree(every):
    """checkpoint(k) for k dividing T, not dividing it, k = T and k > T: all equal the graph policy."""
    pb = _mixed_problem()
    lam = pb.init_hparams()
    ref = hg.estimate("rmd", pb, lam, storage="graph")
    h = hg.estimate("rmd", pb, lam, storage="checkpoint", every=every)
    assert rel_err(h.value, ref.value) < AGREE_RTOL
    assert rel_err(torch.cat([p.reshape(-1) for p in h.state.params]),
                   torch.cat([p.reshape(-1) for p in ref.state.params])) < 1e-14
    assert h.cost.vjps == 7 and h.cost.val_grads == 1


@pytest.mark.parametrize("storage", STORAGES)
def test_truncated_with_K_equal_T_is_rmd(storage):
    pb = _mixed_problem()
    lam = pb.init_hparams()
    full = hg.estimate("rmd", pb, lam, storage=storage)
    for K in (7, 100):  # K >= T is clipped to T
        tr = hg.estimate("truncated_rmd", pb, lam, K=K, storage=storage)
        assert rel_err(tr.value, full.value) < AGREE_RTOL
        assert tr.info["K"] == 7


@pytest.mark.parametrize("K", [1, 3])
def test_truncated_is_rmd_over_the_last_K_steps(K):
    """Truncated RMD(K) from s_0 equals exact RMD over K steps started at s_{T−K}; the storage
    policies agree on it; and it differs from full RMD."""
    Tt = 7
    pb = make_problem("sgd", {"lr": Hyper(0.3, "tensor"), "momentum": Hyper(0.8)}, T=None)
    lam = pb.init_hparams()
    res = {st: hg.estimate("truncated_rmd", pb, lam, T=Tt, K=K, storage=st) for st in STORAGES}
    for st in ("recompute", "checkpoint"):
        assert rel_err(res[st].value, res["graph"].value) < AGREE_RTOL
    s_mid, _ = pb.run(pb.init_state(), lam, Tt - K)
    short = hg.estimate("rmd", pb, lam, T=K, state=s_mid)
    assert rel_err(res["graph"].value, short.value) < AGREE_RTOL
    full = hg.estimate("rmd", pb, lam, T=Tt)
    assert rel_err(res["graph"].value, full.value) > 1e-3


def test_rmd_from_a_given_state_matches_finite_differences():
    """``state=`` starts the inner loop elsewhere (warm start); steps keep their global index t."""
    pb = make_problem("rmsprop", {"lr": Hyper(0.02, "element"), "momentum": Hyper(0.5)}, T=None,
                      options={"centered": True})
    lam = pb.init_hparams()
    s3, _ = pb.run(pb.init_state(), lam, 3)
    for st in STORAGES:
        h = hg.estimate("rmd", pb, lam, T=4, state=s3, storage=st)
        assert h.state.t == 7
    assert_fd_close(h.value, fd_grad(val_after(pb, 4, state=s3), lam))


def test_invalid_estimator_options():
    with pytest.raises(ValueError, match="storage"):
        hg.estimate("rmd", make_problem(), {}, storage="disk")
    with pytest.raises(ValueError, match="every=k applies"):
        hg.estimators.get("rmd", storage="graph", every=3)
    with pytest.raises(ValueError, match="K must be a positive int"):
        hg.estimators.get("truncated_rmd", K=0)
    with pytest.raises(ValueError, match="unknown estimator"):
        hg.estimators.get("rmd2")
