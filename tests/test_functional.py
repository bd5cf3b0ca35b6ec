"""The functional model: user modules are never modified, tied weights work, BatchNorm statistics
are carried as state, and dropout is replayable (seeded steps)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.core.functional import FunctionalModel, select

from conftest import (AGREE_RTOL, STORAGES, assert_fd_close, assert_module_unchanged, classification_data,
                      fd_grad, make_problem, module_snapshot, rel_err, val_after)


def _bn_dropout_net(p=0.3):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(p), nn.Linear(6, 3)).double()


def _torch_train(model, batches, T, **sgd):
    """T steps of torch.optim.SGD on a copy, in train mode; returns the copy."""
    m = copy.deepcopy(model).train()
    opt = torch.optim.SGD(m.parameters(), **sgd)
    for t in range(1, T + 1):
        x, y = batches[(t - 1) % len(batches)]
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m


# ---- user modules are never modified ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_user_module_is_never_modified(mode):
    """Parameters, buffers (BatchNorm statistics), requires_grad, .grad, train/eval flags and the
    parameter objects themselves are the same after problems, runs and every estimate."""
    model = _bn_dropout_net()
    model.train(mode == "train")
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # a stale .grad must survive untouched
    snap = module_snapshot(model)
    mwn = nn.Linear(1, 1).double()
    mwn_snap = module_snapshot(mwn)

    def train_loss(f, b, hp):
        per = F.cross_entropy(f(b[0]), b[1], reduction="none")
        return (torch.sigmoid(hp["mwn"](per[:, None])).squeeze(-1) * per).mean()

    pb = make_problem("adam", {"lr": Hyper(0.01, "element")}, model=model, T=4, train_loss=train_loss,
                      model_hparams="0", hparam_modules={"mwn": mwn})
    lam = pb.init_hparams()
    pb.run(pb.init_state(), lam, 4)
    for st in STORAGES:
        hg.estimate("rmd", pb, lam, storage=st)
    hg.estimate("truncated_rmd", pb, lam, K=2)
    assert_module_unchanged(model, snap)
    assert_module_unchanged(mwn, mwn_snap)
    # λ for model parts and modules are copies, not the module's own tensors
    assert lam["model.0.weight"].data_ptr() != model[0].weight.data_ptr()
    assert lam["loss.mwn.weight"].data_ptr() != mwn.weight.data_ptr()


def test_initial_state_is_a_copy():
    model = _bn_dropout_net()
    pb = make_problem("sgd", {"lr": 0.1}, model=model)
    s0 = pb.init_state()
    for w, p in zip(s0.params, model.parameters()):
        assert torch.equal(w, p) and w.data_ptr() != p.data_ptr()
    for n, b in model.named_buffers():
        assert torch.equal(s0.buffers[n], b) and s0.buffers[n].data_ptr() != b.data_ptr()


# ---- tied weights -------------------------------------------------------------------------------------
class Reuse(nn.Module):
    """One Linear applied twice."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.mid = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.mid(torch.tanh(self.mid(x)))))


class Tied(nn.Module):
    """Two attribute names, one module (an encoder/decoder-style tie)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.a = nn.Linear(4, 4)
        self.b = self.a
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))


@pytest.mark.parametrize("cls,names", [(Reuse, ("mid.weight", "mid.bias", "out.weight", "out.bias")),
                                       (Tied, ("a.weight", "a.bias", "out.weight", "out.bias"))])
def test_tied_weights(cls, names):
    """Tied parameters appear once; training equals torch.optim (gradients of both uses summed);
    the hypergradient matches finite differences for every storage policy."""
    model = cls().double()
    train, _ = classification_data()
    pb = make_problem("sgd", {"lr": Hyper(0.3, "element"), "momentum": Hyper(0.6)}, model=model, T=5)
    assert pb.names == names
    lam = pb.init_hparams()
    sT, _ = pb.run(pb.init_state(), lam, 5)
    ref = _torch_train(model, train, 5, lr=0.3, momentum=0.6)
    for w, (n, p) in zip(sT.params, ref.named_parameters()):
        torch.testing.assert_close(w, p.detach(), atol=1e-12, rtol=0, msg=n)
    fd = fd_grad(val_after(pb), lam)
    for st in STORAGES:
        assert_fd_close(hg.estimate("rmd", pb, lam, storage=st).value, fd)


# ---- BatchNorm running statistics -----------------------------------------------------------------------
def test_batchnorm_running_stats_are_state():
    """Running statistics evolve in the state exactly as in torch (train mode), differ from the
    module's after the run, and the module keeps its own."""
    model = _bn_dropout_net(p=0.0)
    train, _ = classification_data()
    snap = module_snapshot(model)
    pb = make_problem("sgd", {"lr": 0.2, "momentum": 0.5}, model=model, T=6)
    assert pb.fmodel.has_batchnorm
    sT, _ = pb.run(pb.init_state(), pb.init_hparams(), 6)
    ref = _torch_train(model, train, 6, lr=0.2, momentum=0.5)
    for n, b in ref.named_buffers():
        torch.testing.assert_close(sT.buffers[n], b, atol=1e-13, rtol=0, msg=n)
        assert not torch.equal(sT.buffers[n], dict(model.named_buffers())[n]), n
    assert sT.buffers["1.num_batches_tracked"].item() == 6
    for w, p in zip(sT.params, ref.parameters()):
        torch.testing.assert_close(w, p.detach(), atol=1e-12, rtol=0)
    assert_module_unchanged(model, snap)


@pytest.mark.parametrize("val_mode", ["train", "eval"])
def test_batchnorm_val_mode(val_mode):
    """val_mode picks the mode of the validation forward: eval uses the carried running statistics,
    train the batch statistics; the exact estimators agree in both."""
    model = _bn_dropout_net(p=0.0)
    pb = make_problem("sgd", {"lr": Hyper(0.2), "momentum": 0.5}, model=model, T=4, val_mode=val_mode)
    lam = pb.init_hparams()
    res = {st: hg.estimate("rmd", pb, lam, storage=st) for st in STORAGES}
    for st in STORAGES:
        assert rel_err(res[st].value, res["graph"].value) < AGREE_RTOL
    sT = res["graph"].state
    m = copy.deepcopy(model).train(val_mode == "train")
    with torch.no_grad():
        for (n, p), w in zip(m.named_parameters(), sT.params):
            p.copy_(w)
        for n, b in m.named_buffers():
            b.copy_(sT.buffers[n])
        xv, yv = classification_data()[1]
        expected = F.cross_entropy(m(xv), yv)
    torch.testing.assert_close(res["graph"].val_loss, expected, atol=1e-13, rtol=0)
    if val_mode == "train":  # with running statistics out of the forward, the estimate is exact
        assert_fd_close(res["graph"].value, fd_grad(val_after(pb), lam))
    # in eval mode the running statistics are constants to the hypergradient (InnerProblem's
    # val_mode docstring), so finite differences differ by their path (~1e-3 relative here)


# ---- dropout --------------------------------------------------------------------------------------------
def test_dropout_is_replayable():
    """Steps are seeded, so recompute/checkpoint replay the same masks as the graph policy, the
    result is reproducible, the global RNG is left alone, and the estimate is exact (finite
    differences see the same masks)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.4), nn.Linear(6, 3)).double()
    pb = make_problem("sgd", {"lr": Hyper(0.3, "tensor"), "momentum": Hyper(0.5)}, model=model, T=5)
    lam = pb.init_hparams()
    rng = torch.get_rng_state()
    res = {st: hg.estimate("rmd", pb, lam, storage=st) for st in STORAGES}
    res["checkpoint-2"] = hg.estimate("rmd", pb, lam, storage="checkpoint", every=2)
    assert torch.equal(torch.get_rng_state(), rng)
    for st in res:
        assert rel_err(res[st].value, res["graph"].value) < AGREE_RTOL, st
    again = hg.estimate("rmd", pb, lam, storage="recompute")
    assert torch.equal(again.flat(), res["recompute"].flat())
    assert_fd_close(res["graph"].value, fd_grad(val_after(pb), lam))

    # dropout is really active: another seed, or no dropout, changes the answer
    other = make_problem("sgd", {"lr": Hyper(0.3, "tensor"), "momentum": Hyper(0.5)}, model=model, T=5, seed=1)
    assert rel_err(hg.estimate("rmd", other, lam).value, res["graph"].value) > 1e-3
    nodrop = copy.deepcopy(model)
    nodrop[2].p = 0.0
    plain = make_problem("sgd", {"lr": Hyper(0.3, "tensor"), "momentum": Hyper(0.5)}, model=nodrop, T=5)
    assert rel_err(hg.estimate("rmd", plain, lam).value, res["graph"].value) > 1e-3


def test_two_forward_calls_in_one_loss_get_different_masks():
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5)).double()
    seen = []

    def train_loss(f, b, hp):
        a, c = f(b[0]), f(b[0])
        seen.append(torch.equal(a, c))
        return (a - c).pow(2).mean() + a.sum()

    pb = make_problem("sgd", {"lr": 0.1}, model=model, train_loss=train_loss,
                      val_loss=lambda f, b, hp: f(b[0]).sum())
    pb.run(pb.init_state(), pb.init_hparams(), 2)
    assert seen == [False, False]


# ---- the functional model and name selection -------------------------------------------------------------
def test_functional_model_call_does_not_touch_buffers():
    model = _bn_dropout_net(p=0.0)
    fm = FunctionalModel(model)
    params, buffers = fm.parameters(model), fm.buffers(model)
    before = {k: v.clone() for k, v in buffers.items()}
    out, new = fm(params, buffers, (torch.randn(5, 4),), training=True)
    assert out.shape == (5, 3)
    for k in before:
        assert torch.equal(buffers[k], before[k])
    assert not torch.equal(new["1.running_mean"], before["1.running_mean"])
    # eval mode reads the running statistics and leaves them alone
    out_e, new_e = fm(params, buffers, (torch.randn(5, 4),), training=False)
    assert all(torch.equal(new_e[k], before[k]) for k in before)
    assert fm.names == tuple(n for n, _ in model.named_parameters())


def test_select():
    names = ("body.0.weight", "body.0.bias", "body.2.weight", "head.weight", "head.bias")
    assert select(names, None) == []
    assert select(names, "body") == ["body.0.weight", "body.0.bias", "body.2.weight"]
    assert select(names, ["head.bias", "body.2"]) == ["body.2.weight", "head.bias"]
    assert select(names, "*.weight") == ["body.0.weight", "body.2.weight", "head.weight"]
    assert select(names, lambda n: n.endswith("bias")) == ["body.0.bias", "head.bias"]
    with pytest.raises(ValueError, match="no parameter of the model matches"):
        select(names, "bod")  # a prefix matches whole name components only
    with pytest.raises(ValueError, match="nothing is left"):
        make_problem("sgd", {"lr": 0.1}, model_hparams="*")
