"""Getting results out (core/results.py, diagnostics/plots.py): the trained network as a copy of the
user's module, the learned λ by name as plain values, and the plots of schedules and histories."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper, Hypers
from hypergradient.diagnostics.plots import plot_history, plot_schedules, schedules_of



def ce(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1])


def data(seed=0, n=48):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    return hg.Data([(X[:24], y[:24]), (X[24:], y[24:])], (X, y))


def bn_problem(val_mode="eval", **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    sgd = hg.optim.sgd(lr=Hyper(0.1, "tensor", positive="exp", schedule=4), momentum=0.9,
                       weight_decay=Hyper(1e-3, positive="exp"))
    return model, hg.InnerProblem(model, ce, ce, sgd, data=data(), horizon=8,
                                  settings=hg.Settings(val_mode=val_mode), **kw)


def test_final_state_is_run_without_graph():
    _, p = bn_problem()
    lam = p.init_hparams()
    s = p.final_state(lam)
    ref, _ = p.run(p.init_state(), lam, 8)
    assert s.t == 8 and all(torch.equal(a, b) for a, b in zip(s.params, ref.params))
    assert not any(w.requires_grad for w in s.params)


@pytest.mark.parametrize("val_mode", ["eval", "train"])
def test_module_at_is_the_trained_network_with_its_batchnorm_statistics(val_mode):
    model, p = bn_problem(val_mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lam = p.init_hparams()
    s = p.final_state(lam)
    m = p.module_at(s)
    assert m is not model and int(m[1].num_batches_tracked) == 8
    assert torch.equal(m[1].running_mean, s.buffers["1.running_mean"])
    X, y = p.data.val
    m.train(val_mode == "train")
    with torch.no_grad():
        assert torch.equal(F.cross_entropy(m(X), y), p.val_loss_at(s, lam))
    # the user's module is untouched (weights and running statistics)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_module_at_tied_weights_and_model_parts():
    torch.manual_seed(1)
    emb = nn.Linear(5, 5, bias=False)
    model = nn.Sequential(emb, nn.Tanh(), emb, nn.Linear(5, 3))   # the same Linear twice (a shared Parameter)

    def fwd(f, batch, hp):
        return F.cross_entropy(f(batch[0]), batch[1])
    p = hg.InnerProblem(model, fwd, fwd, hg.optim.sgd(lr=Hyper(0.1)), Hypers(model=["3.weight"]), data(), horizon=3)
    lam = p.init_hparams()
    lam["model.3.weight"] = lam["model.3.weight"] + 0.5          # a learned model part
    s = p.final_state(lam)
    with pytest.raises(ValueError, match="module_at\\(state, lam\\)"):
        p.module_at(s)
    m = p.module_at(s, lam)
    assert m[2].weight is m[0].weight                           # still tied in the copy
    assert torch.equal(m[3].weight, lam["model.3.weight"])
    X, y = p.data.val
    with torch.no_grad():
        assert torch.equal(F.cross_entropy(m(X), y), p.val_loss_at(s, lam))


def test_module_at_refuses_a_state_of_another_problem():
    _, p = bn_problem()
    other = hg.InnerProblem(nn.Linear(5, 3), ce, ce, "sgd", data=data(), horizon=2)
    with pytest.raises(ValueError, match="state of this problem"):
        p.module_at(other.init_state())


def test_learned_reads_every_kind_by_name():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    mwn = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))

    def weighted(f, batch, hp):
        losses = F.cross_entropy(f(batch[0]), batch[1], reduction="none")
        return (torch.sigmoid(hp["mwn"](losses.detach()[:, None]))[:, 0] * losses).mean() + hp["l2"] * 0
    sgd = hg.optim.sgd(lr=Hyper(0.1, "scalar", positive="exp", schedule=3), momentum=Hyper(0.5, "tensor"),
                       weight_decay=1e-4)
    p = hg.InnerProblem(model, weighted, ce, sgd, Hypers(loss={"l2": Hyper(0.3, positive="softplus")},
                        modules={"mwn": mwn}), data(), horizon=6)
    lam = p.init_hparams()
    lam["optim.lr"] = torch.log(torch.tensor([0.1, 0.2, 0.05]))
    lam["loss.mwn.0.bias"] = lam["loss.mwn.0.bias"] + 1.0
    out = p.learned(lam)
    assert out["lr"] == pytest.approx([0.1, 0.2, 0.05], rel=1e-12) and isinstance(out["lr"], list)
    assert out["momentum"] == {n: pytest.approx(0.5) for n in p.names}
    assert out["weight_decay"] == 1e-4 and out["dampening"] == 0.0
    assert out["l2"] == pytest.approx(0.3, rel=1e-12)
    got = out["mwn"]
    assert isinstance(got, nn.Sequential) and got is not mwn
    assert set(dict(got.named_parameters())) == {"0.weight", "0.bias", "2.weight", "2.bias"}   # no prefix
    assert torch.equal(got[0].bias, lam["loss.mwn.0.bias"])
    x = torch.randn(7, 1)
    with torch.no_grad():
        assert torch.equal(got(x), p.hparams_view(lam)["mwn"](x))
    with torch.no_grad():
        got[0].bias.zero_()                                       # a copy: λ is unchanged
    assert not torch.equal(got[0].bias, lam["loss.mwn.0.bias"])


def test_learned_element_wise_is_a_tensor_per_weight():
    model = nn.Linear(5, 3)
    p = hg.InnerProblem(model, ce, ce, hg.optim.sgd(lr=Hyper(0.05, "element", positive="exp")), data=data(), horizon=2)
    out = p.learned(p.init_hparams())
    assert set(out["lr"]) == {"weight", "bias"}
    assert out["lr"]["weight"].shape == (3, 5) and torch.allclose(out["lr"]["bias"], torch.full((3,), 0.05))


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    _, p = bn_problem()
    lam = p.init_hparams()
    sched = schedules_of(p, lam)
    assert set(sched) == {"lr"} and len(sched["lr"]) == len(p.names) and all(len(v) == 4 for v in sched["lr"].values())
    plot_schedules(p, lam, str(tmp_path / "s.png"))
    res = hg.run_offline(p, "rmd", lam, torch.optim.SGD(lam.values(), lr=0.01), steps=2, progress=False)
    plot_history(res, path=str(tmp_path / "h.png"))
    plot_history(res.history, keys=["val_loss"], path=str(tmp_path / "v.png"))
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("s.png", "h.png", "v.png"))
    assert hg.diagnostics.plot_history is plot_history
    with pytest.raises(ValueError, match="plot_history"):
        plot_schedules(hg.InnerProblem(nn.Linear(5, 3), ce, ce, "sgd", data=data(), horizon=2), {})
    with pytest.raises(ValueError, match="numeric"):
        plot_history(res, keys=["nothing"])
    with pytest.raises(TypeError, match="history"):
        plot_history(3.0)
    assert math.isfinite(res.history["val_loss"][-1])


def test_learned_reports_the_clipped_value_the_steps_use():
    sgd = hg.optim.sgd(lr=0.1, momentum=Hyper(0.5, schedule=2, bounds=(0.0, 0.9), enforce="clip"))
    p = hg.InnerProblem(nn.Linear(5, 3), ce, ce, sgd, data=data(), horizon=4)
    lam = p.init_hparams()
    lam["optim.momentum"] = torch.tensor([1.3, 0.4])
    assert p.learned(lam)["momentum"] == pytest.approx([0.9, 0.4])
    assert [float(v[0]) for v in (p.spec.coefficients(lam, 1)["momentum"], p.spec.coefficients(lam, 3)["momentum"])] \
        == pytest.approx([0.9, 0.4])


def test_learned_decides_schedules_per_weight():
    """A schedule on one param group does not turn another group's element-wise values into lists."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    sgd = hg.optim.sgd([{"params": "0.*", "lr": Hyper(0.1, schedule=2)},
                        {"params": "2.*", "lr": Hyper(0.2, "element")}])
    p = hg.InnerProblem(model, ce, ce, sgd, data=data(), horizon=4)
    lr = p.learned(p.init_hparams())["lr"]
    assert lr["0.weight"] == pytest.approx([0.1, 0.1]) and lr["0.bias"] == pytest.approx([0.1, 0.1])
    assert isinstance(lr["2.bias"], torch.Tensor) and lr["2.bias"].shape == (3,)
    assert isinstance(lr["2.weight"], torch.Tensor) and lr["2.weight"].shape == (3, 4)
