"""Bad input fails early with ValueError / TypeError naming the fix (STYLE.md §10); degenerate but
legal inputs give zeros, not crashes; numerical failures raise DivergenceError / FloatingPointError."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import hypergradient as hg
from hypergradient import Hyper

from conftest import STORAGES, ce, classification_data, make_problem, mlp


class Counted:
    """A training loss that counts its calls, to check that errors come before any work."""

    def __init__(self):
        self.calls = 0

    def __call__(self, f, b, hp):
        self.calls += 1
        return ce(f, b, hp)


# ---- hyperparameter specifications --------------------------------------------------------------------
@pytest.mark.parametrize("init", [torch.ones(2, 2), torch.ones(6), {"0.weight": torch.ones(4, 6), "0.bias": 0.1,
                                                                    "2.weight": 0.1, "2.bias": 0.1}])
def test_element_init_with_wrong_shape(init):
    loss = Counted()
    with pytest.raises(ValueError, match=r"shape .* is needed"):
        make_problem("sgd", {"lr": Hyper(init, "element")}, train_loss=loss)
    assert loss.calls == 0


def test_block_schedule_with_too_few_values():
    with pytest.raises(ValueError, match=r"2 values but 5 are needed \(block=2 over T=10"):
        make_problem("sgd", {"lr": Hyper(torch.tensor([0.1, 0.2]), block=2)}, T=10)
    with pytest.raises(ValueError, match="3 values but 2 are needed"):
        make_problem("sgd", {"lr": Hyper(torch.tensor([0.1, 0.2, 0.3]), schedule=2)}, T=10)
    with pytest.raises(ValueError, match="shape"):  # the same for per-tensor schedules
        make_problem("sgd", {"lr": Hyper(torch.tensor([0.1, 0.2]), "tensor", block=2)}, T=10)


def test_schedule_needs_a_horizon():
    with pytest.raises(ValueError, match="horizon"):
        make_problem("sgd", {"lr": Hyper(0.1, schedule=2)}, T=None)
    pb = make_problem("sgd", {"lr": Hyper(0.1, schedule=2)}, T=6)
    with pytest.raises(ValueError, match="T=4 differs"):
        hg.estimate("rmd", pb, pb.init_hparams(), T=4)
    with pytest.raises(ValueError, match="give the number of inner steps"):
        hg.estimate("rmd", make_problem("sgd", {"lr": Hyper(0.1)}, T=None), {"optim.lr": torch.tensor(0.1)})


def test_unknown_hyperparameter_name():
    # the optimizer carries its hyperparameters and options (issue 13): an unknown keyword is refused there
    with pytest.raises(TypeError, match=r"SGD has no option or hyperparameter \['betas'\].*lr.*momentum"):
        make_problem("sgd", {"betas": 0.9})
    with pytest.raises(TypeError, match="no option"):
        make_problem("adam", {}, options={"nesterov": True})
    # the deprecated Hypers(optimizer=...) still names the hyperparameters, and where options go
    for bad in ({"betas": 0.9}, {"nesterov": True}):
        with pytest.warns(DeprecationWarning, match="Hypers"), \
                pytest.raises(ValueError, match=r"SGD has no hyperparameter .*options such as nesterov go to the optimizer's constructor"):
            hg.InnerProblem(mlp(), ce, ce, "sgd", hg.Hypers(bad), hg.Data(*classification_data()))


def test_learnable_tensor_must_be_wrapped():
    with pytest.raises(TypeError, match=r"Hyper\(init=...\)"):
        make_problem("sgd", {"lr": torch.tensor(0.1)})


# ---- dtypes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [torch.tensor(1), torch.tensor(0.1 + 0j), 0.1 + 0j])
def test_integer_and_complex_hyperparameters(value):
    loss = Counted()
    with pytest.raises(TypeError, match="real float"):
        make_problem("sgd", {"lr": Hyper(value)}, train_loss=loss)
    with pytest.raises(TypeError, match="real float"):
        make_problem("sgd", {"lr": Hyper(value, "tensor")}, train_loss=loss)
    with pytest.raises(TypeError, match="real float"):
        make_problem("sgd", {"lr": 0.1}, loss_hparams={"c": value}, train_loss=loss)
    if not isinstance(value, torch.Tensor):
        with pytest.raises(TypeError, match="real float"):
            make_problem("sgd", {"lr": value}, train_loss=loss)
    assert loss.calls == 0


def test_integer_lambda_passed_to_estimate():
    pb = make_problem("sgd", {"lr": Hyper(0.1)})
    with pytest.raises(TypeError, match="real floating point"):
        hg.estimate("rmd", pb, {"optim.lr": torch.tensor(1)})


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
@pytest.mark.parametrize("dtype", [torch.complex128, torch.int64])
def test_non_real_model(dtype):
    model = nn.Linear(4, 3).to(torch.complex128) if dtype.is_complex else nn.Linear(4, 3).double()
    if not dtype.is_complex:
        model.weight = nn.Parameter(torch.ones(3, 4, dtype=dtype), requires_grad=False)
    with pytest.raises(TypeError, match="only real floating-point parameters"):
        make_problem("sgd", {"lr": 0.1}, model=model)


# ---- hyperparameters and losses that do not connect ------------------------------------------------------
def test_hyperparameter_nothing_depends_on_warns_and_gets_zero():
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, loss_hparams={"unused": Hyper(torch.ones(2))})
    lam = pb.init_hparams()
    for st in STORAGES:
        with pytest.warns(UserWarning, match=r"nothing depends on the hyperparameters \['loss.unused'\]"):
            h = hg.estimate("rmd", pb, lam, storage=st)
        assert torch.equal(h.value["loss.unused"], torch.zeros(2))
        assert h.value["optim.lr"].abs() > 0


def test_validation_loss_independent_of_w_and_lambda():
    loss = Counted()
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, train_loss=loss,
                      val_loss=lambda f, b, hp: torch.tensor(1.0))
    for st in STORAGES:
        pb.cost = hg.Cost()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match="val_loss must call f"):
                hg.estimate("rmd", pb, pb.init_hparams(), storage=st)
        assert pb.cost.steps == 0, "the error came after the inner loop ran"


def test_training_loss_independent_of_w():
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, train_loss=lambda f, b, hp: torch.tensor(1.0))
    with pytest.raises(ValueError, match="train_loss must call f"):
        hg.estimate("rmd", pb, pb.init_hparams())


def test_validation_loss_must_be_scalar():
    pb = make_problem("sgd", {"lr": Hyper(0.1)}, val_loss=lambda f, b, hp: f(b[0]).sum(0))
    with pytest.raises(ValueError, match="scalar"):
        hg.estimate("rmd", pb, pb.init_hparams())


class WithIdle(nn.Module):
    """A parameter the loss never touches."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
        self.idle = nn.Linear(3, 3)

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop", "adagrad"])
def test_parameter_that_does_not_affect_the_loss(opt):
    """Its gradient is zero (not None): the hypergradient of its element-wise lr is zero and finite
    (Adam / RMSprop take √0 under double backward), and the rest is unchanged."""
    hps = {"lr": Hyper(0.05, "element"), "weight_decay": 0.0}
    pb = make_problem(opt, hps, model=WithIdle().double(), T=4, options={"centered": True} if opt == "rmsprop" else None)
    lam = pb.init_hparams()
    res = {}
    for st in STORAGES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # whether the probe reports the idle lr is not the point
            res[st] = hg.estimate("rmd", pb, lam, storage=st)
        for k in ("optim.lr[idle.weight]", "optim.lr[idle.bias]"):
            assert torch.equal(res[st].value[k], torch.zeros_like(lam[k]))
        assert res[st].value["optim.lr[net.0.weight]"].abs().sum() > 0
    sT = res["graph"].state
    idle = dict(zip(pb.names, sT.params))["idle.weight"]
    assert torch.equal(idle, pb.init_state().params[pb.names.index("idle.weight")])


# ---- numerical failures ---------------------------------------------------------------------------------
def test_diverging_inner_loop_raises_divergence_error():
    pb = make_problem("sgd", {"lr": Hyper(1e8)}, T=60,
                      train_loss=lambda f, b, hp: (f(b[0]) ** 2).mean() * 1e3)
    with pytest.raises(hg.DivergenceError, match="diverged at step"):
        hg.estimate("rmd", pb, pb.init_hparams())
    with pytest.raises(hg.DivergenceError):
        pb.run(pb.init_state(), pb.init_hparams(), 60)
    assert issubclass(hg.DivergenceError, FloatingPointError)


@pytest.mark.parametrize("storage", STORAGES)
def test_nan_hypergradient_raises(storage):
    """Finite losses, NaN hypergradient: √(c − c) has an infinite derivative times zero."""
    def val_loss(f, b, hp):
        return ce(f, b, hp) + torch.sqrt(hp["c"] - hp["c"].detach())

    pb = make_problem("sgd", {"lr": Hyper(0.1)}, val_loss=val_loss, loss_hparams={"c": 1.0})
    with pytest.raises(FloatingPointError, match=r"non-finite hypergradients for \['loss.c'\]") as e:
        hg.estimate("rmd", pb, pb.init_hparams(), storage=storage)
    assert not isinstance(e.value, hg.DivergenceError)


def test_bad_problem_arguments():
    train, val = classification_data()
    data = hg.Data(train, val)
    with pytest.raises(TypeError, match="callables"):
        hg.InnerProblem(mlp(), None, ce, data=data)
    with pytest.raises(ValueError, match="val_mode"):
        hg.InnerProblem(mlp(), ce, ce, data=data, settings=hg.Settings(val_mode="test"))
    with pytest.raises(ValueError, match="Data"):
        hg.InnerProblem(mlp(), ce, ce)
    with pytest.raises(ValueError, match="Data"):
        hg.Data(None, val)
    with pytest.raises(ValueError, match="empty"):
        hg.InnerProblem(mlp(), ce, ce, data=hg.Data([], val))
    with pytest.raises(ValueError, match="horizon"):
        hg.InnerProblem(mlp(), ce, ce, data=data, horizon=0)
    with pytest.raises(TypeError, match="nn.Module"):
        hg.InnerProblem(lambda x: x, ce, ce, data=data)
    with pytest.raises(ValueError, match="unknown optimizer"):
        hg.InnerProblem(mlp(), ce, ce, "lbfgs", data=data)
    with pytest.raises(TypeError, match="unexpected keyword"):
        hg.InnerProblem(mlp(), ce, ce, data=data, horizn=3)
    with pytest.raises(TypeError, match="inside data=Data"), pytest.warns(DeprecationWarning):
        hg.InnerProblem(mlp(), ce, ce, data=data, val_batches=val)
