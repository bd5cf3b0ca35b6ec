"""Forward mode's SGD closed form through the step's gradient transforms (clip=, maximize), and the
non-greedy paper's Hessian-product clipping ``FMD(hvp_clip=c)`` (ALGORITHMS.md §2; estimators/fmd.py).

With g̃ = T(∇L(w_{t-1})) the recursion needs P_t = J_T H_t Z_{t-1} (M·H·Z for a value clip's mask M),
not the H·M·Z of a double backward through the clipped gradient. Checked in float64 against the
generic batched JVP, central finite differences and reverse mode, with the clips binding; the clamp
clamp(P_t, −c, c) against a hand loop of the recursion on a linear least-squares model.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.drivers.checkpoint import estimator_config
from hypergradient.estimators.base import resolve

from conftest import AGREE_RTOL, assert_fd_close, ce, ce_l2, fd_grad, make_problem, rel_err, val_after

T = 6
SHARED = dict(lr=Hyper(0.3, schedule=3), momentum=Hyper(0.5, schedule=3), weight_decay=Hyper(0.02, schedule=3))
CLIPS = {"value": lambda: hg.optim.clip_by_value(0.05), "norm": lambda: hg.optim.clip_by_norm(0.65)}


def neg_ce(f, batch, hp):
    """−cross-entropy: with ``maximize=True`` SGD ascends it, i.e. still fits the data."""
    return -ce(f, batch, hp)


def _problem(clip=None, maximize=False, hparams=SHARED, optimizer="sgd"):
    options = dict(maximize=maximize, **({} if clip is None else {"clip": clip}))
    return make_problem(optimizer, hparams, T=T, options=options, train_loss=neg_ce if maximize else ce)


def _binding(pb, lam, clip):
    """Per step: (entries clipped, entries) for a value clip, whether the bound binds for a norm clip."""
    seen, state = [], pb.init_state()
    for _ in range(T):
        _, g, _ = pb._train_grad(state, lam, state.t + 1, create_graph=False)
        flat = torch.cat([x.reshape(-1) for x in g])
        if isinstance(clip, hg.optim.clip.ClipByValue):
            seen.append((int((flat.abs() > clip.clip_value).sum()), flat.numel()))
        else:
            seen.append(bool(flat.norm() > clip.max_norm))
        state = pb.step(state, lam)
    return seen


# ---- (a) the closed form is exact through clip= and maximize -------------------------------------------------
CASES = {"value": (["value"], False), "norm": (["norm"], False), "maximize": ([], True),
         "norm+value+maximize": (["norm", "value"], True)}


@pytest.mark.parametrize("case", list(CASES))
def test_closed_form_is_exact_through_transforms(case):
    kinds, maximize = CASES[case]
    clips = [CLIPS[k]() for k in kinds]
    pb = _problem(clips or None, maximize)
    lam = pb.init_hparams()
    assert [k for k in lam] == ["optim.lr", "optim.momentum", "optim.weight_decay"]
    assert all(v.shape == (3,) for v in lam.values())
    for clip in clips:                      # each clip binds: on some entries (value) / some steps (norm)
        seen = _binding(pb, lam, clip)
        if isinstance(clip, hg.optim.clip.ClipByValue):
            assert all(0 < k < n for k, n in seen), seen
        else:
            assert any(seen) and not all(seen), seen
    cf = hg.estimate("fmd", pb, lam)
    assert cf.info["closed_form"] is True and cf.info["hvp_clip"] is None
    assert rel_err(hg.estimate("fmd", pb, lam, closed_form=True).value, cf.value) == 0
    generic = hg.estimate("fmd", pb, lam, closed_form=False)
    assert generic.info["closed_form"] is False
    assert rel_err(cf.value, generic.value) < AGREE_RTOL
    assert rel_err(cf.value, hg.estimate("rmd", pb, lam).value) < AGREE_RTOL
    assert_fd_close(cf.value, fd_grad(val_after(pb), lam))
    # the step inside the closed form is update(T(g)), the trajectory Φ takes (T not applied twice)
    sT, _ = pb.run(pb.init_state(), lam, T)
    assert all(torch.equal(a, b) for a, b in zip(cf.state.params, sT.params))


def test_clipping_changes_the_answer():
    """The clip is not a no-op on this problem: its hypergradient is not the unclipped one."""
    lam = _problem().init_hparams()
    plain = hg.estimate("fmd", _problem(), lam).value
    for make in CLIPS.values():
        assert rel_err(hg.estimate("fmd", _problem(make()), lam).value, plain) > 1e-2


def test_apply_is_update_of_transform():
    opt = hg.optim.sgd(lr=0.1, momentum=0.5, clip=[hg.optim.clip_by_norm(0.3), hg.optim.clip_by_value(0.1)],
                       maximize=True)
    g = (torch.randn(3, 2), torch.randn(4))
    p = (torch.randn(3, 2), torch.randn(4))
    st = opt.init(p)
    coef = {"lr": (0.1, 0.1), "momentum": (0.5, 0.5), "dampening": (0.0, 0.0), "weight_decay": (0.0, 0.0)}
    a, _ = opt.apply(g, st, p, coef, 1)
    b, _ = opt.update(opt.transform(g), st, p, coef, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    expect = [-x for x in hg.optim.clip_by_value(0.1)(hg.optim.clip_by_norm(0.3)(g))]
    assert all(torch.equal(x, y) for x, y in zip(opt.transform(g), expect))
    plain = hg.optim.sgd(lr=0.1)
    assert not plain.has_transforms and all(x is y for x, y in zip(plain.transform(g), g))


def test_transform_jvp_is_the_jacobian_of_the_transform():
    """J_T·V column by column against the full Jacobian of T (norm clip then value clip then the sign)."""
    opt = hg.optim.sgd(clip=[hg.optim.clip_by_norm(1.0), hg.optim.clip_by_value(0.3)], maximize=True)
    g = (torch.randn(3, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([0.5, -0.1, 0.2, -2.0]))
    V = [torch.randn(5, 3, 2), torch.randn(5, 4)]
    gt, jv = opt.transform_jvp(g, V)
    assert all(torch.equal(x, y) for x, y in zip(gt, opt.transform(g)))
    J = torch.autograd.functional.jacobian(
        lambda x: torch.cat([y.reshape(-1) for y in opt.transform((x[:6].reshape(3, 2), x[6:]))]),
        torch.cat([g[0].reshape(-1), g[1]]))
    off = J - torch.diag(J.diagonal())
    assert (J.diagonal() == 0).any() and (J.diagonal() != 0).any() and off.abs().max() > 0   # both clips bind
    for n in range(5):
        ref = J @ torch.cat([V[0][n].reshape(-1), V[1][n]])
        got = torch.cat([jv[0][n].reshape(-1), jv[1][n]])
        torch.testing.assert_close(got, ref, atol=1e-14, rtol=0)
    _, jv0 = opt.transform_jvp(g, [None, V[1]])      # None: a zero tangent; the norm clip couples the tensors
    torch.testing.assert_close(jv0[0][0], (J[:6, 6:] @ V[1][0]).reshape(3, 2), atol=1e-14, rtol=0)


# ---- (b) hvp_clip: the paper's clamp of the Hessian product ----------------------------------------------
class Linear(nn.Module):
    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone())

    def forward(self, X):
        return X @ self.w


def _lsq(f, batch, hp):
    X, y = batch
    return 0.5 * ((f(X) - y) ** 2).mean()


def _linear_data(seed=0, n=8, d=4, n_batches=2):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n * n_batches, d, generator=g)
    y = 0.5 * (2 * X @ torch.randn(d, generator=g) + torch.randn(n * n_batches, generator=g))
    Xv = torch.randn(n, d, generator=g)
    return [(X[i:i + n], y[i:i + n]) for i in range(0, n * n_batches, n)], (Xv, Xv @ torch.ones(d)), \
        0.1 * torch.randn(d, generator=g)


def _linear_problem(hvp_c=None, grad_c=0.5):
    train, val, w0 = _linear_data()
    opt = hg.optim.sgd(clip=hg.optim.clip_by_value(grad_c), **SHARED)
    return hg.InnerProblem(Linear(w0), _lsq, _lsq, opt, data=hg.Data(train, val), horizon=T)


def reference(lam, hvp_c, grad_c=0.5, trap=False):
    """The closed-form recursion by hand (no autograd) on 0.5·mean((Xw − y)²): g = Xᵀ(Xw − y)/n,
    H = XᵀX/n, g̃ = clamp(g, ±grad_c) with mask M = (|g| ≤ grad_c), P = clamp(M·H·Z, ±hvp_c),
    C_t = β C_{t-1} + P + μ Z + β' v_{t-1} + μ' w,  v_t = β v_{t-1} + g̃ + μ w,  Z_t = Z − α C_t − α' v_t.
    Columns: the 3 lr values, then the 3 momentum values, then the 3 weight-decay values. ``trap``:
    H·M·Z instead (what a double backward through the clipped gradient gives; ALGORITHMS.md §2)."""
    train, (Xv, yv), w = _linear_data()
    lr, mom, wd = lam["optim.lr"], lam["optim.momentum"], lam["optim.weight_decay"]
    N, d = 9, w.numel()
    v, Z, C = torch.zeros(d), torch.zeros(d, N), torch.zeros(d, N)
    eye, bound = torch.eye(N), {"clamped": 0}
    for t in range(1, T + 1):
        k = 3 * (t - 1) // T
        a, b, m = lr[k], mom[k], wd[k]
        X, y = train[(t - 1) % len(train)]
        g = X.T @ (X @ w - y) / len(y)
        H = X.T @ X / len(y)
        mask = (g.abs() <= grad_c).to(g.dtype)
        P = H @ (mask[:, None] * Z) if trap else mask[:, None] * (H @ Z)
        bound["clamped"] += int((P.abs() > hvp_c).sum())
        P = P.clamp(-hvp_c, hvp_c)
        C = b * C + torch.outer(v, eye[3 + k]) + P + m * Z + torch.outer(w, eye[6 + k])
        v = b * v + g.clamp(-grad_c, grad_c) + m * w
        Z = Z - a * C - torch.outer(v, eye[k])
        w = w - a * v
    col = (Xv.T @ (Xv @ w - yv) / len(yv)) @ Z
    return {"optim.lr": col[:3], "optim.momentum": col[3:6], "optim.weight_decay": col[6:]}, bound["clamped"]


def test_hvp_clip_matches_a_hand_loop_and_departs_from_exact():
    pb = _linear_problem()
    lam = pb.init_hparams()
    exact = hg.estimate("fmd", pb, lam)
    ref_exact, n_clamped = reference(lam, math.inf)
    assert n_clamped == 0
    assert rel_err(exact.value, ref_exact) < 1e-12                     # the hand loop is the exact recursion
    assert rel_err(exact.value, hg.estimate("rmd", pb, lam).value) < AGREE_RTOL
    # the gradient clip binds on some entries at some steps (so the loop tests M·H·Z too)
    seen = _binding(pb, lam, pb.optimizer.clip[0])
    assert sum(0 < k < n for k, n in seen) >= 3, seen
    assert rel_err(reference(lam, math.inf, trap=True)[0], exact.value) > 1e-2      # H·M·Z would be wrong
    huge = hg.estimate("fmd", pb, lam, hvp_clip=1e12)
    assert huge.info["hvp_clip"] == 1e12 and huge.info["closed_form"] is True
    assert rel_err(huge.value, exact.value) < 1e-12
    c = 0.05
    clipped = hg.estimate("fmd", pb, lam, hvp_clip=c)
    ref, n_clamped = reference(lam, c)
    assert n_clamped > 0
    assert rel_err(clipped.value, exact.value) > 1e-2                   # a real departure from exact FMD
    assert rel_err(clipped.value, ref) < 1e-12
    assert clipped.info["hvp_clip"] == c


def test_hvp_clip_through_the_registry_and_the_checkpoint_config():
    est = resolve("fmd", hvp_clip=10.)
    assert est.hvp_clip == 10.0 and est.closed_form is None
    assert resolve("fmd").hvp_clip is None
    outer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert estimator_config(est, {"x": torch.zeros(2)}, outer)["options"] == {"closed_form": None, "hvp_clip": 10.0}
    pb = _problem(CLIPS["value"]())
    lam = pb.init_hparams()
    h = hg.estimate("fmd", pb, lam, T=T, hvp_clip=10.0)
    assert h.info["hvp_clip"] == 10.0
    assert rel_err(h.value, hg.estimate("fmd", pb, lam).value) < 1e-12    # ±10 does not bind on this problem


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, "10", True])
def test_hvp_clip_value_is_checked(bad):
    with pytest.raises(ValueError, match="hvp_clip must be a positive finite number"):
        resolve("fmd", hvp_clip=bad)


def test_hvp_clip_needs_the_closed_form():
    with pytest.raises(ValueError, match="closed_form=False turns the closed form off"):
        resolve("fmd", hvp_clip=10.0, closed_form=False)
    pb = _problem(hparams=dict(lr=Hyper(0.01)), optimizer="adam")
    with pytest.raises(ValueError, match=r"hvp_clip .* closed form does not apply: .*Adam.*; drop hvp_clip"):
        hg.estimate("fmd", pb, pb.init_hparams(), hvp_clip=10.0)
    pb = make_problem("sgd", dict(lr=Hyper(0.1)), T=T, loss_hparams={"l2": Hyper(0.01)}, train_loss=ce_l2)
    with pytest.raises(ValueError, match=r"closed form does not apply: λ holds \['loss.l2'\]"):
        hg.estimate("fmd", pb, pb.init_hparams(), hvp_clip=10.0)
    nesterov = make_problem("sgd", SHARED, T=T, options=dict(nesterov=True))
    with pytest.raises(ValueError, match="Nesterov"):
        hg.estimate("fmd", nesterov, nesterov.init_hparams(), hvp_clip=10.0)
