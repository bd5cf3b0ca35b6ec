"""Mistakes a new user makes get a clear error or warning that names the fix (ISSUE 12, part 1):
nothing here may pass in silence."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.drivers import run_online
from hypergradient.reproduce.sinusoid.report import _fmt

from conftest import ce, ce_l2, classification_data, make_problem, mlp


def test_loss_that_calls_the_module_instead_of_f():
    model = mlp()
    wrong = lambda f, b, hp: F.cross_entropy(model(b[0]), b[1]) + hp["l2"]   # noqa: E731
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, model=model, train_loss=wrong, loss_hparams={"l2": 0.1})
    with pytest.raises(ValueError, match=r"train_loss must call f\(x\).*not model\(x\)"):
        hg.estimate("rmd", pb, pb.init_hparams())
    model = mlp()
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, model=model,
                      val_loss=lambda f, b, hp: F.cross_entropy(model(b[0]), b[1]))
    with pytest.raises(ValueError, match=r"validation loss reaches neither.*f\(x\)"):
        hg.estimate("rmd", pb, pb.init_hparams())
    model = mlp()
    pb = make_problem("sgd", {"lr": 0.1}, model=model, train_loss=ce_l2, loss_hparams={"l2": Hyper(0.1)},
                      val_loss=lambda f, b, hp: F.cross_entropy(model(b[0]), b[1]) + hp["l2"])
    with pytest.warns(UserWarning, match=r"does not reach the inner weights.*f\(x\)"):
        hg.estimate("rmd", pb, pb.init_hparams())


def test_frozen_parameters_stay_constant():
    model = mlp()
    model[0].weight.requires_grad_(False)
    pb = make_problem("sgd", {"lr": Hyper(0.5)}, model=model)
    assert "0.weight" not in pb.names
    s, _ = pb.run(pb.init_state(), pb.init_hparams(), 3)
    assert "0.weight" not in pb.params_dict(s)
    h = hg.estimate("rmd", pb, pb.init_hparams())
    assert torch.isfinite(h.flat()).all() and h.value["optim.lr"] != 0
    trained = make_problem("sgd", {"lr": Hyper(0.5)}, model=model, frozen="train")
    assert "0.weight" in trained.names
    everything = mlp()
    for p in everything.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen='train'"):
        make_problem("sgd", {"lr": 0.1}, model=everything)


def test_values_torch_optim_rejects():
    with pytest.raises(ValueError, match=r"lr = -0.1 is outside \[0.0, inf\].*torch.optim.SGD"):
        make_problem("sgd", {"lr": -0.1})
    with pytest.raises(ValueError, match=r"beta1 = 1.5 is outside \[0.0, 1.0\)"):
        make_problem("adam", {"beta1": Hyper(1.5)})
    for bad in ({"eps": -1e-8}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError, match="torch.optim.Adam"):
            make_problem("adam", bad)
    with pytest.raises(ValueError, match="momentum"):
        make_problem("sgd", {"momentum": -0.5})
    with pytest.raises(ValueError, match="nesterov=True.*momentum > 0"):
        make_problem("sgd", {"lr": 0.1}, options={"nesterov": True})
    with pytest.raises(ValueError, match="nesterov=True.*dampening = 0"):
        make_problem("sgd", {"momentum": 0.9, "dampening": 0.1}, options={"nesterov": True})
    signed = make_problem("sgd", {"lr": Hyper(-0.1, "tensor", bounds=None)})     # an explicit signed search
    assert all(v.item() == -0.1 for v in signed.init_hparams().values())
    with pytest.raises(ValueError, match="bounds"):
        Hyper(0.1, bounds="clip")


@pytest.mark.parametrize("T", [0, -3])
def test_non_positive_horizons(T):
    pb = make_problem("sgd", {"lr": Hyper(0.1)})
    lam = pb.init_hparams()
    for name in ("rmd", "fmd", "one_step"):
        with pytest.raises(ValueError, match="positive int"):
            hg.estimate(name, pb, lam, T=T)
    with pytest.raises(ValueError, match="positive int"):
        run_online(pb, "fmd", lam, torch.optim.SGD(lam.values(), lr=0.1), T=T, progress=False)


def test_losses_that_are_not_scalar_tensors_and_to_grad_keys():
    unreduced = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1], reduction="none")   # noqa: E731
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, train_loss=unreduced)
    with pytest.raises(ValueError, match=r"reduction='mean'"):
        hg.estimate("rmd", pb, pb.init_hparams())
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, train_loss=lambda f, b, hp: 1.0)
    with pytest.raises(TypeError, match="scalar tensor"):
        hg.estimate("rmd", pb, pb.init_hparams())
    pb = make_problem("sgd", {"lr": Hyper(0.1)})
    h = hg.estimate("rmd", pb, pb.init_hparams())
    with pytest.raises(KeyError, match="init_hparams"):
        h.to_grad({})


def test_schedules_at_horizon_one_and_past_the_horizon():
    for h in (Hyper(0.1, schedule=1), Hyper(0.1, block=1)):
        pb = make_problem("sgd", {"lr": h}, T=1)
        for name in ("rmd", "fmd"):
            assert torch.isfinite(hg.estimate(name, pb, pb.init_hparams()).flat()).all()
    pb = make_problem("sgd", {"lr": Hyper(0.1, schedule=2)}, T=4)
    lam = pb.init_hparams()
    s, _ = pb.run(pb.init_state(), lam, 2)
    with pytest.raises(ValueError, match="outside the horizon 1..4"):
        hg.estimate("rmd", pb, lam, state=s)


def test_hyperdistill_says_when_it_drops_the_fitted_scale():
    class Weighted(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 1)

        def forward(self, x):
            return torch.sigmoid(self.w(x))
    train, val = classification_data(0)

    def train_loss(f, b, hp):
        per = F.cross_entropy(f(b[0]), b[1], reduction="none")
        return (hp["mwn"](per.detach().unsqueeze(1)).squeeze(1) * per).mean()
    pb = make_problem("sgd", {"lr": 0.1}, train_loss=train_loss, hparam_modules={"mwn": Weighted()}, T=3)
    with pytest.warns(UserWarning, match=r"zero_direct='unit'.*zero_direct='fit'"):
        hg.estimate("hyperdistill", pb, pb.init_hparams())


def test_model_without_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        hg.InnerProblem(nn.Tanh(), ce, ce, data=hg.Data(*classification_data(0)))


def test_blown_up_mse_is_not_printed_as_digits():
    assert _fmt(3.2e28, 1e27) == "blew up (3.2e+28)" and _fmt(float("inf"), 0.0) == "diverged"
    assert _fmt(0.1234, 0.01) == "0.123 ± 0.010"


def test_drivers_show_progress_unless_asked_not_to(capsys):
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, T=3)
    lam = pb.init_hparams()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_online(pb, "one_step", lam, torch.optim.SGD(lam.values(), lr=0.01))
        assert "inner steps (one_step, online)" in capsys.readouterr().err
        run_online(pb, "one_step", lam, torch.optim.SGD(lam.values(), lr=0.01), progress=False)
        hg.run_offline(pb, "rmd", lam, torch.optim.SGD(lam.values(), lr=0.01), 2, progress=False)
        assert capsys.readouterr().err == ""
        hg.run_offline(pb, "rmd", lam, torch.optim.SGD(lam.values(), lr=0.01), 2)
        assert "outer steps (rmd)" in capsys.readouterr().err


def test_nan_in_the_data_is_named_as_the_datas_fault():
    train, val = classification_data(0)
    train = [(x.clone(), y) for x, y in train]
    train[1][0][0, 0] = float("nan")
    pb = hg.InnerProblem(mlp(), ce, ce, hg.optim.sgd(lr=Hyper(0.1)), hg.Hypers(), hg.Data(train, val), horizon=4)
    with pytest.raises(ValueError, match="batch of step 2 already holds NaN.*data is at fault"):
        hg.estimate("rmd", pb, pb.init_hparams())


def test_hparams_of_another_dtype_are_refused():
    pb = make_problem("sgd", {"lr": Hyper(0.1)})
    lam = {k: v.detach().float().requires_grad_() for k, v in pb.init_hparams().items()}
    with pytest.raises(ValueError, match=r"torch.float32 .* but the model's weights are torch.float64.*init_hparams"):
        hg.estimate("rmd", pb, lam)


# ---- divergence (core/divergence.py) -------------------------------------------------------------------
def _blowing_up(lr: float = 100.0):
    return make_problem("sgd", {"lr": Hyper(lr)}, T=50)


def test_a_finite_blow_up_is_caught_at_its_step():
    """CE, tanh MLP, lr = 100: the training loss goes 1.1, 93, 552, ... (finite); the running mean passes
    10 × the first loss at step 3."""
    pb = _blowing_up()
    for name in ("rmd", "fmd", "drmad"):
        with pytest.raises(hg.DivergenceError, match=r"diverged at step 3: the running mean .* lower the learning"):
            hg.estimate(name, pb, pb.init_hparams())
    lam = pb.init_hparams()
    with pytest.raises(hg.DivergenceError, match="problem 0: the inner loop diverged at step 3"):
        run_online(pb, "one_step", lam, torch.optim.SGD(lam.values(), lr=0.0), progress=False)
    quiet = make_problem("sgd", {"lr": Hyper(100.0)}, T=50, divergence=None)     # the check turned off
    assert torch.isfinite(hg.estimate("rmd", quiet, quiet.init_hparams()).flat()).all()
    with pytest.raises(ValueError, match="factor > 1"):
        hg.core.divergence.Divergence(factor=0.5)


def test_divergence_policies_of_the_drivers():
    """Two tasks share λ (an L2 coefficient); the second one's constant lr = 100 blows its inner loop up
    (training loss 1.01, 152, 16733, ...: the running mean 16.1 passes 10 × 1.01 at step 2)."""
    good = make_problem("sgd", {"lr": 0.1}, train_loss=ce_l2, loss_hparams={"l2": Hyper(0.01)}, T=6)
    bad = make_problem("sgd", {"lr": 100.0}, train_loss=ce_l2, loss_hparams={"l2": Hyper(0.01)}, T=6)
    for policy in ("record", "skip", "restart"):
        lam = good.init_hparams()
        seen = []
        res = run_online([good, bad], "one_step", lam, torch.optim.SGD(lam.values(), lr=0.0), progress=False,
                         divergence=policy, callback=lambda states, value: seen.append([s.t for s in states]))
        events = res.history["divergence"]
        assert [(e["problem"], e["step"], e["action"]) for e in events][:1] == [(1, 2, policy)]
        if policy == "restart":
            assert seen[1] == [2, 0]                              # the diverged task starts again
        else:
            assert len(events) == 1 and seen[-1] == [6, 6]
    lam = bad.init_hparams()
    before = lam["loss.l2"].detach().clone()
    res = hg.run_offline(bad, "rmd", lam, torch.optim.SGD(lam.values(), lr=0.1), 2, divergence="skip",
                         progress=False)
    assert [e["t"] for e in res.history["divergence"]] == [2, 2] and torch.equal(lam["loss.l2"].detach(), before)
    res = hg.run_offline(bad, "rmd", lam, torch.optim.SGD(lam.values(), lr=0.1), 1, divergence="record",
                         progress=False)
    assert len(res.history["divergence"]) == 1 and not torch.equal(lam["loss.l2"].detach(), before)
    with pytest.raises(ValueError, match="divergence must be one of"):
        run_online(good, "one_step", lam, torch.optim.SGD(lam.values(), lr=0.0), divergence="ignore")


def test_a_run_that_ends_worse_than_it_started_warns():
    pb = make_problem("sgd", {"lr": Hyper(0.05)}, T=5)
    lam = pb.init_hparams()
    climbing = torch.optim.SGD(lam.values(), lr=0.5, maximize=True)      # outer steps that ascend L_val
    with pytest.warns(UserWarning, match="ended worse than it started"):
        run_online(pb, "one_step", lam, climbing, episodes=3, progress=False, divergence="record")


def test_bounds_on_learned_values():
    """enforce='clip' clamps the learned value into its bounds at every step (its hypergradient is the
    clipped map's: zero outside); 'raise' names the step where it left them; 'init' only checks s_0."""
    pb = make_problem("sgd", {"lr": Hyper(0.1, enforce="clip")}, T=3)
    lam = pb.init_hparams()
    with torch.no_grad():
        lam["optim.lr"].fill_(-0.3)                          # an outer step overshot below lr = 0
    assert pb.spec.coefficients(lam, 1)["lr"][0].item() == 0.0
    assert hg.estimate("rmd", pb, lam).value["optim.lr"].item() == 0.0
    pb = make_problem("sgd", {"lr": Hyper(0.1, bounds=(0.05, 0.5), enforce="raise")}, T=3)
    lam = pb.init_hparams()
    with torch.no_grad():
        lam["optim.lr"].fill_(0.9)
    with pytest.raises(ValueError, match=r"optim.lr left its bounds \[0.05, 0.5\] at step 1.*enforce='clip'"):
        hg.estimate("rmd", pb, lam)
    with pytest.raises(ValueError, match="outside bounds"):
        make_problem("sgd", {"lr": Hyper(0.9, bounds=(0.05, 0.5))})
    with pytest.raises(ValueError, match="needs bounds"):
        Hyper(0.1, bounds=None, enforce="clip")
    beta = make_problem("adam", {"beta1": Hyper(0.9, enforce="clip")}, T=2)
    lam = beta.init_hparams()
    with torch.no_grad():
        lam["optim.beta1"].fill_(1.2)
    assert beta.spec.coefficients(lam, 1)["beta1"][0].item() < 1.0     # [0, 1): kept below 1
