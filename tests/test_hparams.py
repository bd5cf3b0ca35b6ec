"""Hyperparameters λ: keys and shapes per granularity, schedules (non-greedy paper §4), positivity
transforms, and the structure of what estimators return."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import hypergradient as hg
from hypergradient import Hyper

from conftest import classification_data, make_problem, mlp, rel_err

PARAMS = {"0.weight": (6, 4), "0.bias": (6,), "2.weight": (3, 6), "2.bias": (3,)}


# ---- Hyper itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(granularity="layer"), "granularity"),
    (dict(positive="square"), "positive"),
    (dict(schedule=2, block=3), "either schedule"),
    (dict(schedule=0), "schedule must be a positive int"),
    (dict(block=1.5), "block must be a positive int"),
])
def test_hyper_rejects_bad_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hyper(0.1, **kwargs)


# ---- keys and shapes -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,shape_of", [
    (Hyper(0.1), lambda s: ()),
    (Hyper(0.1, "tensor"), lambda s: ()),
    (Hyper(0.1, "element"), lambda s: s),
    (Hyper(0.1, schedule=3), lambda s: (3,)),
    (Hyper(0.1, "tensor", schedule=4), lambda s: (4,)),
    (Hyper(0.1, "element", block=4), lambda s: (3, *s)),  # ceil(10 / 4) = 3
])
def test_keys_and_shapes(spec, shape_of):
    pb = make_problem("sgd", {"lr": spec}, T=10)
    lam = pb.init_hparams()
    if spec.granularity == "scalar":
        assert list(lam) == ["optim.lr"]
        assert lam["optim.lr"].shape == shape_of(())
    else:
        assert list(lam) == [f"optim.lr[{n}]" for n in PARAMS]
        for n, s in PARAMS.items():
            assert lam[f"optim.lr[{n}]"].shape == shape_of(s)
    for v in lam.values():
        assert v.requires_grad and v.is_leaf and v.dtype == torch.float64
        torch.testing.assert_close(v, torch.full_like(v, 0.1))


def test_all_kinds_of_keys():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 6)
            self.head = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.body(x)))

    def train_loss(f, b, hp):
        w = hp["mwn"](F.cross_entropy(f(b[0]), b[1], reduction="none")[:, None]).squeeze(-1)
        return (w * F.cross_entropy(f(b[0]), b[1], reduction="none")).mean() + hp["l2"] * \
            sum((p ** 2).sum() for p in f.params.values())

    torch.manual_seed(0)
    pb = make_problem("sgd", {"lr": Hyper(0.1, "tensor")}, model=Net().double(), train_loss=train_loss,
                      model_hparams="body", loss_hparams={"l2": 1e-3},
                      hparam_modules={"mwn": torch.nn.Linear(1, 1).double()})
    assert pb.names == ("head.weight", "head.bias")
    assert list(pb.init_hparams()) == ["optim.lr[head.weight]", "optim.lr[head.bias]", "model.body.weight",
                                       "model.body.bias", "loss.l2", "loss.mwn.weight", "loss.mwn.bias"]


def test_per_parameter_initial_values():
    init = {n: 0.1 * (i + 1) for i, n in enumerate(PARAMS)}
    lam = make_problem("sgd", {"lr": Hyper(init, "tensor")}).init_hparams()
    for n, v in init.items():
        assert lam[f"optim.lr[{n}]"].item() == pytest.approx(v)
    el = {n: torch.rand(s) for n, s in PARAMS.items()}
    lam = make_problem("sgd", {"weight_decay": Hyper(el, "element")}).init_hparams()
    for n, v in el.items():
        assert torch.equal(lam[f"optim.weight_decay[{n}]"].detach(), v)
    with pytest.raises(ValueError, match="missing"):
        make_problem("sgd", {"lr": Hyper({"0.weight": 0.1}, "tensor")}).init_hparams()


@pytest.mark.parametrize("positive", ["softplus", "exp"])
def test_positive_transforms(positive):
    """λ holds the raw value r; the hyperparameter is softplus(r) or exp(r)."""
    pb = make_problem("adam", {"lr": Hyper(0.05, positive=positive), "eps": Hyper(1e-3, "tensor", positive=positive)},
                      loss_hparams={"c": Hyper(torch.tensor([0.5, 2.0]), positive=positive)})
    lam = pb.init_hparams()
    f = F.softplus if positive == "softplus" else torch.exp
    torch.testing.assert_close(f(lam["optim.lr"]), torch.tensor(0.05))
    torch.testing.assert_close(pb.spec.value(lam, "optim.lr"), torch.tensor(0.05))
    torch.testing.assert_close(pb.spec.value(lam, "optim.eps[0.bias]"), torch.tensor(1e-3))
    torch.testing.assert_close(pb.spec.value(lam, "loss.c"), torch.tensor([0.5, 2.0]))
    hp = pb.spec.coefficients(lam, 1)
    assert len(hp["lr"]) == len(PARAMS)
    torch.testing.assert_close(hp["lr"][0], torch.tensor(0.05))
    with pytest.raises(ValueError, match="initial value > 0"):
        make_problem("sgd", {"momentum": Hyper(0.0, positive=positive)}).init_hparams()


# ---- schedules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,T,indices,windows", [
    (Hyper(0.1, schedule=3), 10, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2], [4, 3, 3]),
    (Hyper(0.1, schedule=2), 6, [0, 0, 0, 1, 1, 1], [3, 3]),
    (Hyper(0.1, schedule=6), 6, [0, 1, 2, 3, 4, 5], [1] * 6),
    (Hyper(0.1, block=4), 10, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [4, 4, 2]),
    (Hyper(0.1, block=1), 3, [0, 1, 2], [1, 1, 1]),
])
def test_schedule_indices(spec, T, indices, windows):
    """Step t uses floor(K (t−1) / T) (schedule=K) or (t−1) // B (block=B)."""
    pb = make_problem("sgd", {"lr": spec}, T=T)
    assert [pb.spec.index(spec, t) for t in range(1, T + 1)] == indices
    assert pb.spec.window_lengths("optim.lr").tolist() == windows
    assert pb.spec.window_lengths("optim.momentum") is None


@pytest.mark.parametrize("spec", [Hyper(torch.tensor([0.3, 0.1, 0.02]), schedule=3),
                                  Hyper(torch.tensor([0.3, 0.1, 0.02]), "tensor", block=3)])
def test_schedule_reaches_the_optimizer(spec):
    """A scheduled lr equals torch.optim.SGD with its lr changed by hand at the same steps."""
    T = 7
    model = mlp()
    train, _ = classification_data()
    pb = make_problem("sgd", {"lr": spec, "momentum": 0.5}, model=model, T=T)
    lam = pb.init_hparams()
    state, _ = pb.run(pb.init_state(), lam, T)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.0, momentum=0.5)
    for t in range(1, T + 1):
        for g in opt.param_groups:
            g["lr"] = spec.init[pb.spec.index(spec, t)].item()
        x, y = train[(t - 1) % len(train)]
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    for w, r in zip(state.params, ref.parameters()):
        torch.testing.assert_close(w, r.detach(), atol=1e-12, rtol=0)


def test_element_wise_lr_is_per_element():
    """One step with an element-wise lr (Meta-SGD) is w − lr ⊙ ∇L."""
    lrs = {n: torch.rand(s) for n, s in PARAMS.items()}
    model = mlp()
    train, _ = classification_data()
    pb = make_problem("sgd", {"lr": Hyper(lrs, "element")}, model=model)
    s1, _ = pb.run(pb.init_state(), pb.init_hparams(), 1)
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(train[0][0]), train[0][1]).backward()
    for (n, p), w in zip(ref.named_parameters(), s1.params):
        torch.testing.assert_close(w, p.detach() - lrs[n] * p.grad, atol=1e-15, rtol=0)


@pytest.mark.parametrize("granularity", ["scalar", "tensor", "element"])
def test_shared_value_gets_the_sum_over_its_window(granularity):
    """The hypergradient of a scheduled value is the exact derivative: summing a schedule's entries
    gives the hypergradient of the unscheduled hyperparameter (chain rule through the sharing)."""
    T = 6
    hps = {"lr": 0.2, "momentum": 0.7, "weight_decay": 0.03}
    plain = make_problem("sgd", {k: Hyper(v, granularity) for k, v in hps.items()}, T=T)
    g_plain = hg.estimate("rmd", plain, plain.init_hparams()).value
    for sched in (dict(schedule=2), dict(schedule=T), dict(block=4)):
        pb = make_problem("sgd", {k: Hyper(v, granularity, **sched) for k, v in hps.items()}, T=T)
        g = hg.estimate("rmd", pb, pb.init_hparams()).value
        assert rel_err({k: v.sum(0) for k, v in g.items()}, g_plain) < 1e-12
        if sched == dict(schedule=T):  # one value per step: each is that step's contribution
            assert g["optim.lr" if granularity == "scalar" else "optim.lr[0.weight]"].abs().min() > 0


# ---- structure of the result -------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["graph", "recompute", "checkpoint"])
def test_hypergradient_has_the_structure_of_lambda(storage):
    pb = make_problem("adam", {"lr": Hyper(0.05, "element", schedule=2, positive="softplus"),
                               "beta1": Hyper(0.8, "tensor"), "eps": Hyper(1e-3, positive="exp")},
                      loss_hparams={"w": torch.tensor([1.0, 0.5, 2.0])},
                      train_loss=lambda f, b, hp: (hp["w"][b[1]] * F.cross_entropy(f(b[0]), b[1], reduction="none")).mean())
    lam = pb.init_hparams()
    before = {k: v.detach().clone() for k, v in lam.items()}
    h = hg.estimate("rmd", pb, lam, storage=storage)
    for part in (h.value, h.direct, h.indirect):
        assert list(part) == list(lam)
        for k in lam:
            assert part[k].shape == lam[k].shape and part[k].dtype == lam[k].dtype
            assert not part[k].requires_grad
    for k, v in lam.items():
        assert v.grad is None, f"the estimator wrote {k}.grad"
        assert torch.equal(v.detach(), before[k]) and v.requires_grad
    assert h.flat().numel() == sum(v.numel() for v in lam.values())
    for k in lam:
        torch.testing.assert_close(h.value[k], h.direct[k] + h.indirect[k], atol=0, rtol=0)
        if k.startswith("optim."):
            assert torch.equal(h.direct[k], torch.zeros_like(h.direct[k]))
    # .grad only when asked
    h.to_grad(lam)
    for k in lam:
        assert torch.equal(lam[k].grad, h.value[k])
    h.to_grad(lam, accumulate=True)
    for k in lam:
        torch.testing.assert_close(lam[k].grad, 2 * h.value[k])


def test_lambda_structure_is_validated():
    pb = make_problem("sgd", {"lr": Hyper(0.1, "tensor")})
    lam = pb.init_hparams()
    with pytest.raises(ValueError, match="missing"):
        hg.estimate("rmd", pb, {k: v for k, v in list(lam.items())[1:]})
    with pytest.raises(ValueError, match="unknown"):
        hg.estimate("rmd", pb, {**lam, "optim.momentum": torch.tensor(0.0)})
    bad = dict(lam)
    bad["optim.lr[0.bias]"] = torch.full((6,), 0.1)
    with pytest.raises(ValueError, match="shape"):
        hg.estimate("rmd", pb, bad)


def test_window_lengths_sum_to_horizon():
    pb = make_problem("sgd", {"lr": Hyper(0.1, "tensor", schedule=4), "momentum": Hyper(0.5, block=3)}, T=10)
    assert pb.spec.window_lengths("optim.lr[0.weight]").sum() == 10
    assert pb.spec.window_lengths("optim.momentum").tolist() == [3, 3, 3, 1]
    assert math.ceil(10 / 3) == pb.init_hparams()["optim.momentum"].shape[0]
