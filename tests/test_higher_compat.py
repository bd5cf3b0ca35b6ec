"""``hypergradient.higher``: code written for higher runs unchanged. Differential tests against the
installed higher (the bench extra; skipped when absent) give equal outputs and meta-gradients to
1e-12 in float64; AdamW, NAdam, RAdam and RMSprop's variants against an unrolled torch.optim and
central differences; the defects higher's users reported, each fixed and tested."""

from __future__ import annotations

import copy
import gc
import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient.higher as ours

HAVE_HIGHER = importlib.util.find_spec("higher") is not None
needs_higher = pytest.mark.skipif(not HAVE_HIGHER, reason="higher is not installed (pip install -e '.[bench]')")
TOL = 1e-12

# every optimizer higher 0.2.1 supports where higher computes what torch.optim 2.13 computes, with options
# that exercise their branches. Adam and RMSprop are where higher departs from torch.optim (Adam's ε is
# scaled by √(1 − β2^t) in higher: 3e-6 off after 3 steps at ε = 1e-8, 2e-2 at ε = 1e-3): code ported from
# higher gets torch.optim's Adam and RMSprop here, checked against torch.optim and finite differences below.
HIGHER_OPTIMS = [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                 ("SGD", dict(lr=0.1)), ("Adadelta", dict(lr=0.5)), ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
                 ("Adamax", dict(lr=0.02)), ("ASGD", dict(lr=0.05)), ("Rprop", dict(lr=0.01))]


def _higher():
    import warnings
    warnings.filterwarnings("ignore", module="higher")
    import higher
    return higher


def _net(bn=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 5)] + ([nn.BatchNorm1d(5)] if bn else []) + [nn.Tanh(), nn.Linear(5, 2)]
    return nn.Sequential(*layers).double()


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)


def maml(lib, name, kw, copy_initial_weights=True, steps=3, groups=False, override=None, step_override=None, bn=True):
    """A user's MAML script, as written for higher: returns the query loss, the meta-gradients (w.r.t.
    the initial weights and any override tensors) and the history of the fast weights."""
    model = _net(bn)
    params = ([{"params": model[0].parameters(), "lr": kw["lr"] * 2}, {"params": model[-1].parameters()}]
              if groups else model.parameters())
    opt = getattr(torch.optim, name)(params, **kw)
    x, y = _data()
    with lib.innerloop_ctx(model, opt, copy_initial_weights=copy_initial_weights, override=override) as (fm, do):
        for t in range(steps):
            do.step(F.mse_loss(fm(x), y), override=step_override(t) if step_override else None)
        q = F.mse_loss(fm(x), y)
        wrt = list(fm.parameters(time=0)) if copy_initial_weights else list(model.parameters())
        extra = [v for vals in (override or {}).values() for v in _leaves(vals)]
        extra += [v for t in range(steps) for vals in (step_override(t) if step_override else {}).values()
                  for v in _leaves(vals)]
        g = torch.autograd.grad(q, wrt + extra, allow_unused=True)
        hist = [[p.detach() for p in fm.parameters(time=t)] for t in range(steps + 1)]
    return q.detach(), g, hist, {k: v.detach() for k, v in fm.named_buffers()}


def _leaves(vals):
    out = []
    for v in vals:
        out += list(v) if isinstance(v, (tuple, list)) else [v]
    return [v for v in out if isinstance(v, torch.Tensor) and v.requires_grad]


def _assert_same(a, b):
    qa, ga, ha, ba = a
    qb, gb, hb, bb = b
    torch.testing.assert_close(qa, qb, atol=TOL, rtol=0)
    for u, v in zip(ga, gb):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, atol=TOL, rtol=0)
    for pa, pb in zip(ha, hb):
        for u, v in zip(pa, pb):
            torch.testing.assert_close(u, v, atol=TOL, rtol=0)
    for k in ba:
        torch.testing.assert_close(ba[k], bb[k], atol=TOL, rtol=0)


# ---- differential tests against higher ---------------------------------------------------------------
@needs_higher
@pytest.mark.parametrize("copy_initial_weights", [True, False])
@pytest.mark.parametrize("name,kw", HIGHER_OPTIMS, ids=[f"{n}-{'-'.join(k)}" for n, k in HIGHER_OPTIMS])
def test_maml_loop_equals_higher(name, kw, copy_initial_weights):
    """Outputs, meta-gradients, the fast-weight history and BatchNorm's evolving statistics."""
    _assert_same(maml(ours, name, kw, copy_initial_weights), maml(_higher(), name, kw, copy_initial_weights))


@needs_higher
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adamax", dict(lr=0.01))])
def test_learnable_overrides_per_group_and_per_step_equal_higher(name, kw):
    """Learnable rates per group at construction, betas as a tuple of tensors, and a per-step
    override: the same meta-gradients with respect to every one of them."""
    def run(lib):
        torch.manual_seed(3)
        lrs = [torch.tensor(kw["lr"], dtype=torch.float64, requires_grad=True),
               torch.tensor(kw["lr"] / 2, dtype=torch.float64, requires_grad=True)]
        override = {"lr": lrs}
        if name == "Adamax":
            override["betas"] = [(torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
                                  torch.tensor(0.95, dtype=torch.float64, requires_grad=True))]
        scale = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
        per_step = (lambda t: {"lr": [lrs[0] * scale ** t, lrs[1]]}) if name == "SGD" else None
        out = maml(lib, name, kw, groups=True, override=override, step_override=per_step)
        return out
    _assert_same(run(ours), run(_higher()))


@needs_higher
def test_fast_params_history_and_functional_calls_equal_higher():
    def run(lib):
        model = _net(bn=False)
        x, y = _data()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with lib.innerloop_ctx(model, opt) as (fm, do):
            do.step(F.mse_loss(fm(x), y))
            w = [p * 1.0 for p in fm.fast_params]
            out1 = fm(x, params=w)                 # params= sets new fast weights (time 2)
            fm.fast_params = [p + 0.01 for p in fm.parameters()]
            do.step(F.mse_loss(fm(x), y))
            n = len(list(fm.parameters(time=-1)))
            with pytest.raises(IndexError):
                fm.parameters(time=99)
            q = F.mse_loss(fm(x), y)
            g = torch.autograd.grad(q, fm.init_fast_params)
            return out1.detach(), g, [[p.detach() for p in fm.parameters(time=t)] for t in range(5)], n
    a, b = run(ours), run(_higher())
    torch.testing.assert_close(a[0], b[0], atol=TOL, rtol=0)
    for u, v in zip(a[1], b[1]):
        torch.testing.assert_close(u, v, atol=TOL, rtol=0)
    for pa, pb in zip(a[2], b[2]):
        for u, v in zip(pa, pb):
            torch.testing.assert_close(u, v, atol=TOL, rtol=0)
    assert a[3] == b[3]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 4)
        self.dec = nn.Linear(4, 3)
        self.dec.weight = nn.Parameter(self.enc.weight.detach().t().clone())
        self.enc2 = self.enc                                   # a shared submodule
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.dec(torch.tanh(self.enc2(x)))))


class TiedWeight(Tied):
    def __init__(self):
        super().__init__()
        self.other = nn.Linear(3, 4)
        self.other.weight = self.enc.weight                    # one Parameter under two names

    def forward(self, x):
        return super().forward(x) + self.other(x).sum(-1, keepdim=True)


@needs_higher
@pytest.mark.parametrize("cls", [Tied, TiedWeight])
def test_tied_and_shared_weights_equal_higher(cls):
    def run(lib):
        torch.manual_seed(0)
        model = cls().double()
        x, y = _data()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
        with lib.innerloop_ctx(model, opt) as (fm, do):
            for _ in range(3):
                do.step(F.mse_loss(fm(x), y))
            q = F.mse_loss(fm(x), y)
            return q.detach(), torch.autograd.grad(q, list(fm.parameters(time=0)))
    (qa, ga), (qb, gb) = run(ours), run(_higher())
    torch.testing.assert_close(qa, qb, atol=TOL, rtol=0)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, atol=TOL, rtol=0)


@needs_higher
def test_higher_adam_departs_from_torch_optim_and_ours_does_not():
    """Why Adam is not in the differential list: higher's Adam is not torch 2.13's."""
    def trajectory_error(lib):
        model, (x, y) = _net(bn=False), _data()
        kw = dict(lr=0.01, eps=1e-3)
        opt, ref = torch.optim.Adam(model.parameters(), **kw), copy.deepcopy(model)
        ref_opt = torch.optim.Adam(ref.parameters(), **kw)
        with lib.innerloop_ctx(model, opt) as (fm, do):
            for _ in range(3):
                do.step(F.mse_loss(fm(x), y))
                ref_opt.zero_grad()
                F.mse_loss(ref(x), y).backward()
                ref_opt.step()
            return max((a - b).abs().max().item() for a, b in zip(fm.parameters(), ref.parameters()))
    assert trajectory_error(ours) < TOL and trajectory_error(_higher()) > 1e-3


# ---- beyond higher: Adam, RMSprop, AdamW, NAdam, RAdam against torch.optim ---------------------------
@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01, weight_decay=0.01)), ("Adam", dict(lr=0.01, amsgrad=True)),
                                     ("RMSprop", dict(lr=0.01)), ("AdamW", dict(lr=0.01)), ("NAdam", dict(lr=0.01, decoupled_weight_decay=True,
                                                                              weight_decay=0.1)),
                                     ("RAdam", dict(lr=0.01)), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
                                     ("Adam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1))])
def test_optimizers_higher_lacks_follow_torch_optim(name, kw):
    """The inner trajectory equals torch.optim's to 1e-12 (10 steps, param groups, a live optimizer
    that has already stepped twice: its state is copied), and the meta-gradient matches central
    differences in the initial weights."""
    x, y = _data()
    model = _net(bn=False)
    opt = getattr(torch.optim, name)([{"params": model[0].parameters()},
                                      {"params": model[-1].parameters(), "lr": kw["lr"] / 2}], **kw)
    for _ in range(2):                          # the live optimizer has state already
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    ref, ref_opt = copy.deepcopy(model), copy.deepcopy(opt)
    ref_opt = getattr(torch.optim, name)([{"params": ref[0].parameters()},
                                          {"params": ref[-1].parameters(), "lr": kw["lr"] / 2}], **kw)
    ref_opt.load_state_dict(opt.state_dict())

    def inner(w0=None, steps=10):
        with ours.innerloop_ctx(model, opt) as (fm, do):
            if w0 is not None:
                fm.fast_params = w0
            for _ in range(steps):
                do.step(F.mse_loss(fm(x), y))
            return fm, F.mse_loss(fm(x), y)
    fm, q = inner()
    for _ in range(10):
        ref_opt.zero_grad()
        F.mse_loss(ref(x), y).backward()
        ref_opt.step()
    for a, b in zip(fm.parameters(), ref.parameters()):
        torch.testing.assert_close(a.detach(), b.detach(), atol=TOL, rtol=0)
    w0 = [p.detach().clone().requires_grad_() for p in model.parameters()]
    _, q = inner(w0, steps=4)
    g = torch.autograd.grad(q, w0)
    eps = 1e-6
    for k in (0, 3):
        for idx in [(0,) * w0[k].dim(), tuple(s - 1 for s in w0[k].shape)]:
            def f(d):
                w = [p.detach().clone() for p in w0]
                w[k][idx] += d
                return inner([p.requires_grad_() for p in w], steps=4)[1].item()
            fd = (f(eps) - f(-eps)) / (2 * eps)
            assert abs(g[k][idx].item() - fd) <= 1e-6 * max(1.0, abs(fd)), (k, idx, g[k][idx].item(), fd)


# ---- the defects higher's users reported --------------------------------------------------------------
def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RSS read from /proc")
def test_contexts_leave_nothing_behind():
    """200 contexts opened and closed: no tensor outlives them and RSS grows < 1% from 100 to 200."""
    model = _net()
    x, y = _data()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def one():
        with ours.innerloop_ctx(model, opt) as (fm, do):
            for _ in range(3):
                do.step(F.mse_loss(fm(x), y))
            F.mse_loss(fm(x), y).backward()
    one()
    before = _live_tensors()
    rss = {}
    for i in range(1, 201):
        one()
        if i in (100, 200):
            gc.collect()
            rss[i] = _rss_kib()
    assert _live_tensors() == before
    assert rss[200] <= rss[100] * 1.01, rss


def test_adam_sqrt_zero_stays_finite_under_double_backward():
    """A parameter whose gradient is exactly zero in places (an embedding's unused rows): Adam's √0 has
    a finite derivative, so the meta-gradient is finite under anomaly detection."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(6, 3), nn.Flatten(), nn.Linear(6, 1)).double()
    idx = torch.tensor([[0, 1], [1, 2]])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with torch.autograd.detect_anomaly():
        with ours.innerloop_ctx(model, opt) as (fm, do):
            for _ in range(3):
                do.step(fm(idx).pow(2).mean())
            g = torch.autograd.grad(fm(idx).pow(2).mean(), list(fm.parameters(time=0)))
    assert all(bool(torch.isfinite(x).all()) for x in g)


def test_tensors_in_param_groups_are_differentiated():
    model = _net(bn=False)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["lr"] = lr                      # a tensor placed in the group by the user
    x, y = _data()
    with ours.innerloop_ctx(model, opt) as (fm, do):
        do.step(F.mse_loss(fm(x), y))
        g, = torch.autograd.grad(F.mse_loss(fm(x), y), lr)
    assert g.abs() > 0


def test_batchnorm_statistics_written_back_when_asked():
    x, y = _data()
    for write_back in (False, True):
        model = _net()
        with ours.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                write_back_buffers=write_back) as (fm, do):
            do.step(F.mse_loss(fm(x), y))
            inner = fm[1].running_mean.clone()
        assert torch.equal(model[1].running_mean, inner) == write_back
        assert write_back or torch.equal(model[1].running_mean, torch.zeros(5, dtype=torch.float64))


def test_state_dict_and_a_new_window_keep_the_optimizer_state():
    """Truncated meta-learning: after 3 steps, start a new window at time 0 (graph cut, state kept);
    the next 3 steps equal 6 uninterrupted ones, and the state round-trips through state_dict."""
    x, y = _data()
    model = _net(bn=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with ours.innerloop_ctx(model, opt) as (fm, do):
        for _ in range(6):
            do.step(F.mse_loss(fm(x), y))
        full = [p.detach() for p in fm.parameters()]
    with ours.innerloop_ctx(model, opt) as (fm, do):
        for _ in range(3):
            do.step(F.mse_loss(fm(x), y))
        saved = do.state_dict()
        do.detach_()
        fm.start_window()
        assert len(list(fm.parameters(time=0))) == len(full) and fm.init_fast_params[0].grad_fn is None
        with ours.innerloop_ctx(model, opt) as (_, other):
            other.load_state_dict(saved)
            assert other.state[0][0]["step"] == 3
        for _ in range(3):
            do.step(F.mse_loss(fm(x), y))
        assert all(torch.equal(a.detach(), b) for a, b in zip(fm.parameters(), full))
        assert do.state[0][0]["step"] == 6


# ---- the rest of higher's surface ---------------------------------------------------------------------
def test_submodules_rnns_frozen_and_modes():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)
            self.gru = nn.GRU(4, 4, batch_first=True)
            self.head = nn.Linear(4, 1)
            self.head.bias.requires_grad_(False)

        def forward(self, x):
            return self.head(self.gru(self.rnn(x)[0])[0][:, -1])
    model = Seq().double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with ours.innerloop_ctx(model, opt) as (fm, do):
        assert isinstance(fm, Seq)
        torch.testing.assert_close(fm(x), model(x), atol=0, rtol=0)
        new = do.step(fm(x).pow(2).mean())
        assert not new[-1].requires_grad and torch.equal(new[-1], model.head.bias)   # frozen: left out
        # the submodules use the fast weights when called directly, the RNN's flat weights included
        w = list(fm.parameters())
        h = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], w)), (x,))
        torch.testing.assert_close(fm(x), h, atol=1e-14, rtol=0)
        torch.testing.assert_close(fm.head(torch.ones(1, 4, dtype=torch.float64)),
                                   F.linear(torch.ones(1, 4, dtype=torch.float64), w[-2], w[-1]))
        fm.eval()
        assert not fm.rnn.training and model.training


def test_trainable_opt_params_round_trip_with_python_types():
    model = _net(bn=False)
    opt = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[-1].parameters(), "lr": 0.5}],
                           lr=0.1, betas=(0.8, 0.9))
    ov = ours.get_trainable_opt_params(opt)
    assert set(ov) == {"lr", "betas", "eps", "weight_decay"}           # bools and execution options left out
    assert isinstance(ov["betas"][0], tuple) and ov["betas"][0][0].requires_grad
    ov["lr"] = [torch.tensor(0.25), torch.tensor(0.125)]
    ov["betas"] = [(torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.95, dtype=torch.float64))]
    ours.apply_trainable_opt_params(opt, ov)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.125]
    assert all(type(g["lr"]) is float and g["betas"] == (0.7, 0.95) and type(g["betas"][0]) is float
               for g in opt.param_groups)


def test_register_optim_custom_subclass_and_refusals():
    class Halving(torch.optim.SGD):
        pass

    class DifferentiableHalving(ours.optim.DifferentiableOptimizer):
        def _update(self, grouped_grads, **kwargs):
            for group, grads in zip(self.param_groups, grouped_grads):
                for j, (p, g) in enumerate(zip(group["params"], grads)):
                    if g is not None:
                        group["params"][j] = p - 0.5 * group["lr"] * g
    model = _net(bn=False)
    x, y = _data()
    with pytest.raises(ValueError, match="no differentiable version of Halving"):
        with ours.innerloop_ctx(model, Halving(model.parameters(), lr=0.2)):
            pass
    ours.register_optim(Halving, DifferentiableHalving)
    with ours.innerloop_ctx(model, Halving(model.parameters(), lr=0.2)) as (fm, do):
        do.step(F.mse_loss(fm(x), y))
    with ours.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1)) as (fm2, do2):
        do2.step(F.mse_loss(fm2(x), y))
    for a, b in zip(fm.parameters(), fm2.parameters()):
        torch.testing.assert_close(a, b)                   # 0.5 · 0.2 = 0.1
    with pytest.raises(TypeError, match="does not implement _update"):
        ours.register_optim(Halving, type("Nothing", (ours.optim.DifferentiableOptimizer,), {}))
    with pytest.raises(TypeError, match="not a subclass of hypergradient.higher"):
        ours.register_optim(Halving, object)


def test_utils_make_functional_and_create_diff_optim():
    model = _net()
    x, y = _data()
    ps = ours.utils.get_func_params(model)
    assert all(p.requires_grad and p.grad_fn is None for p in ps) and ps[0] is not model[0].weight
    assert ours.utils.flatten([1, [2, (3, {"a": 4})]]) == [1, 2, 3, 4]
    fm = ours.patch.make_functional(model)
    with pytest.raises(ValueError, match="call it with params"):
        fm(x)
    torch.testing.assert_close(fm(x, params=ps), model(x))
    do = ours.create_diff_optim(torch.optim.SGD, {"lr": 0.1}, params=ps, fmodel=fm)
    new = do.step(F.mse_loss(fm(x), y))
    assert len(new) == len(ps) and new[0].grad_fn is not None
    other = ours.patch.monkeypatch(model)
    ours.patch.buffer_sync(fm, other)
    torch.testing.assert_close(other[1].running_mean, fm[1].running_mean)


def test_no_history_without_tracking():
    model = _net(bn=False)
    x, y = _data()
    with ours.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1), track_higher_grads=False) as (fm, do):
        new = do.step(F.mse_loss(fm(x), y))
        assert all(p.grad_fn is None for p in new) and len(fm._hg_history) == 1
        with pytest.raises(ValueError, match="no history"):
            fm.parameters(time=1)


ALL_OPTIMS = HIGHER_OPTIMS + [("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)), ("RMSprop", dict(lr=0.01, centered=True)),
                              ("AdamW", dict(lr=0.01)), ("NAdam", dict(lr=0.01)), ("RAdam", dict(lr=0.01))]


@pytest.mark.parametrize("name,kw", ALL_OPTIMS, ids=[f"{n}-{'-'.join(k)}" for n, k in ALL_OPTIMS])
def test_flat_strategy_equals_the_per_tensor_one(name, kw, monkeypatch):
    """The flat strategy (all weights as one buffer) gives the per-tensor strategy's outputs,
    meta-gradients, history and state (two param groups with different values)."""
    fast = maml(ours, name, kw, groups=True, bn=False, steps=4)
    monkeypatch.setattr(ours.optim._RuleOptimizer, "_update_flat", lambda *a: False)
    slow = maml(ours, name, kw, groups=True, bn=False, steps=4)
    _assert_same(fast, slow)


@needs_higher
def test_grad_callback_at_construction_and_per_step_equals_higher():
    """``grad_callback`` (clipping every gradient, then a per-step one that scales) as higher applies it."""
    def run(lib):
        model, (x, y) = _net(bn=False), _data()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
        clip = lambda gs: [g.clamp(-0.05, 0.05) for g in gs]  # noqa: E731
        fm = lib.patch.monkeypatch(model)
        do = lib.optim.get_diff_optim(opt, model.parameters(), fmodel=fm, grad_callback=clip)
        do.step(F.mse_loss(fm(x), y))
        do.step(F.mse_loss(fm(x), y), grad_callback=lambda gs: [0.5 * g for g in gs])
        q = F.mse_loss(fm(x), y)
        return q.detach(), torch.autograd.grad(q, fm.init_fast_params)
    (qa, ga), (qb, gb) = run(ours), run(_higher())
    torch.testing.assert_close(qa, qb, atol=TOL, rtol=0)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, atol=TOL, rtol=0)
