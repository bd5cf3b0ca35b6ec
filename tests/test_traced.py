"""The traced forward (core/traced.py): where the model traces, its values, buffers and gradients are
bitwise those of the module's own forward (float64), the hypergradients too; where it does not
(control flow, hooks, tensors made at trace time, attribute writes), the module runs and
``problem.diagnostics()`` says why."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.core import traced as traced_mod
from hypergradient.core.functional import FunctionalModel
from hypergradient.core.traced import Traced

from test_functional import Reuse, Tied
from test_property import Recurrent


class Kw(nn.Module):
    """A forward with a defaulted argument and a dict output."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.lin = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)

    def forward(self, x, scale=2.0):
        h = self.emb(x).mean(1)
        return {"out": self.ln(self.lin(h)) * scale, "h": h}


class Branchy(nn.Module):
    """Control flow on a tensor value in the top-level forward: does not trace."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x) if x.sum() > 0 else -self.lin(x)


class Noisy(nn.Module):
    """Makes a fresh tensor on every call: a trace would freeze it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x) + torch.randn(3)


class Counting(nn.Module):
    """Changes a Python attribute on every call: a trace would run that once."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(x)


def _mlp():
    return nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(4, 4), nn.ReLU())], nn.Linear(4, 3))


def _bn():
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 3))


def _conv():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(12, 3))


def _wn():
    return nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)), nn.Tanh(), nn.Linear(3, 2))


def _x(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "seq":
        return torch.randn(6, 5, 2, generator=g, dtype=torch.float64)
    if kind == "img":
        return torch.randn(6, 1, 6, 6, generator=g, dtype=torch.float64)
    if kind == "ids":
        return torch.randint(0, 5, (6, 3), generator=g)
    return torch.randn(6, 4, generator=g, dtype=torch.float64)


# (name, model, input kind, expected path)
TRACED = [("mlp", _mlp, "vec", "traced"), ("batchnorm+dropout", _bn, "vec", "traced (as modules: BatchNorm1d)"),
          ("conv+batchnorm2d", _conv, "img", "traced (as modules: BatchNorm2d)"), ("reuse", Reuse, "vec", "traced"),
          ("tied", Tied, "vec", "traced"), ("weight_norm", _wn, "vec", "traced (as modules: _WeightNorm)"),
          ("lstm", lambda: Recurrent(nn.LSTM), "seq", "traced (as modules: LSTM)"),
          ("gru", lambda: Recurrent(nn.GRU), "seq", "traced (as modules: GRU)"),
          ("embedding+layernorm+kwargs", Kw, "ids", "traced")]
UNTRACED = [("lstm at the top", lambda: nn.LSTM(2, 3, batch_first=True), "seq", "does not trace"),
            ("branch on a value", Branchy, "vec", "does not trace"),
            ("randn in forward", Noisy, "vec", "creates the tensor"),
            ("attribute write", Counting, "vec", "changes module attributes (the model.calls)")]


def _calls(fm, params, buffers, x, n=3):
    """n train-mode calls then one eval call (same seeds), outputs and buffers, and the gradient of the
    outputs' sum with respect to the parameters (with its graph: a second backward is bitwise too)."""
    outs, bufs = [], buffers
    for i in range(n):
        torch.manual_seed(i)
        out, bufs = fm(params, bufs, (x,), training=True)
        outs.append((out, bufs))
    torch.manual_seed(9)
    outs.append(fm(params, bufs, (x,), training=False))
    first = outs[0][0]
    loss = sum(v.sum() for v in (first.values() if isinstance(first, dict) else
                                 [first[0] if isinstance(first, tuple) else first]))
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    second = torch.autograd.grad(sum(g.square().sum() for g in grads if g is not None), list(params.values()),
                                 allow_unused=True)
    return outs, grads, second


@pytest.mark.parametrize("name,make,kind,path", TRACED, ids=[t[0] for t in TRACED])
def test_traced_forward_is_bitwise_the_module(name, make, kind, path):
    torch.manual_seed(3)
    model = make().double()
    fast, slow = FunctionalModel(model), FunctionalModel(model, trace=False)
    params = {n: p.detach().clone().requires_grad_() for n, p in fast.parameters(model).items()}
    x = _x(kind)
    fast(params, fast.buffers(model), (x,), training=True)        # the first call in each mode checks the trace
    fast(params, fast.buffers(model), (x,), training=False)
    assert fast.forward_path(True) == path and fast.forward_path(False) == path
    a, b = _calls(fast, params, fast.buffers(model), x), _calls(slow, params, slow.buffers(model), x)
    assert Traced.matches(a, b)


@pytest.mark.parametrize("name,make,kind,why", UNTRACED, ids=[t[0] for t in UNTRACED])
def test_models_that_do_not_trace_run_the_module(name, make, kind, why):
    model = make().double()
    fm = FunctionalModel(model)
    params = fm.parameters(model)
    torch.manual_seed(0)
    out = fm(params, fm.buffers(model), (_x(kind),), training=True)[0]
    assert fm.forward_path(True).startswith("module: ") and why in fm.forward_path(True)
    torch.manual_seed(0)
    ref = FunctionalModel(model, trace=False)(params, fm.buffers(model), (_x(kind),), training=True)[0]
    assert Traced.matches(out, ref)


def test_hooks_keep_the_module_path():
    model = _mlp().double()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(1))
    fm = FunctionalModel(model)
    fm(fm.parameters(model), {}, (_x("vec"),))
    assert "has hooks" in fm.forward_path(True) and seen == [1]   # the module ran, with the hook
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(2))
    try:
        fm2 = FunctionalModel(_mlp().double())
        fm2(fm2.parameters(model), {}, (_x("vec"),))
        assert 2 in seen and fm2.forward_path(True) == "not run yet"  # global hooks: the module ran, no trace taken
    finally:
        handle.remove()


def test_a_trace_that_differs_is_not_taken(monkeypatch):
    model = _mlp().double()
    fm = FunctionalModel(model)
    real = Traced.__call__

    def off(self, tensors, args, kwargs):
        out, rebound = real(self, tensors, args, kwargs)
        return out + 1e-12, rebound
    monkeypatch.setattr(Traced, "__call__", off)
    out, _ = fm(fm.parameters(model), {}, (_x("vec"),))
    assert "differed" in fm.forward_path(True)
    ref, _ = FunctionalModel(model, trace=False)(fm.parameters(model), {}, (_x("vec"),))
    assert torch.equal(out, ref)
    out2, _ = fm(fm.parameters(model), {}, (_x("vec"),))   # and it stays on the module path
    assert torch.equal(out2, ref)


def test_the_check_waits_outside_torch_func_transforms():
    model = _mlp().double()
    fm = FunctionalModel(model)
    params = fm.parameters(model)
    xs = torch.stack([_x("vec")] * 2)
    torch.func.vmap(lambda x: fm(params, {}, (x,))[0])(xs)
    assert fm.forward_path(True).startswith("module until")
    fm(params, {}, (_x("vec"),))
    assert fm.forward_path(True) == "traced"
    out = torch.func.vmap(lambda x: fm(params, {}, (x,))[0])(xs)     # traced under vmap once checked
    ref = torch.func.vmap(lambda x: FunctionalModel(model, trace=False)(params, {}, (x,))[0])(xs)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("make", [_bn, Reuse, lambda: Recurrent(nn.LSTM)], ids=["batchnorm", "reuse", "lstm"])
def test_hypergradients_are_bitwise_equal_with_and_without_the_trace(make):
    g = torch.Generator().manual_seed(0)
    seq = make is not _bn and make is not Reuse
    X = torch.randn(8, 5, 2, generator=g, dtype=torch.float64) if seq else torch.randn(8, 4, generator=g,
                                                                                       dtype=torch.float64)
    y = torch.randint(0, 2, (8,), generator=g)
    ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])             # noqa: E731
    out = []
    for trace in (True, False):
        torch.manual_seed(1)
        problem = hg.InnerProblem(make().double(), ce, ce, hg.optim.sgd(lr=Hyper(0.3, "tensor"), momentum=0.5),
                                  hg.Hypers(), hg.Data([(X, y)], (X, y)), horizon=4,
                                  settings=hg.Settings(trace=trace))
        lam = problem.init_hparams()
        out.append([hg.estimate(e, problem, lam).value for e in ("rmd", "fmd")])
        if trace:
            assert problem.diagnostics()["forward"]["train"].startswith("traced")
        else:
            assert problem.diagnostics()["forward"]["train"].startswith("module: tracing is off")
    assert Traced.matches(out[0], out[1])


def test_diagnostics():
    problem = hg.InnerProblem(_mlp(), lambda f, b, hp: f(b).square().mean(), lambda f, b, hp: f(b).square().mean(),
                              hg.optim.sgd(lr=Hyper(0.1)), hg.Hypers(), hg.Data([torch.randn(4, 4)], torch.randn(4, 4)),
                              horizon=2)
    assert problem.diagnostics()["forward"] == {"train": "not run yet", "eval": "not run yet"}
    hg.estimate("rmd", problem, problem.init_hparams())
    d = problem.diagnostics()
    assert d["forward"]["train"] == "traced" and d["layout"] == "flat" and d["inner weights"] == 6 * 20 + 15
    assert traced_mod.global_hooks() is False


def test_a_vectorized_meta_batch_checks_the_trace_outside_vmap():
    from hypergradient.core.stacked import stack_problems
    g = torch.Generator().manual_seed(0)
    tasks = [(torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
             for _ in range(3)]
    ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])             # noqa: E731
    out = []
    for trace in (True, False):
        torch.manual_seed(1)
        ref = hg.InnerProblem(_mlp().double(), ce, ce, hg.optim.sgd(lr=Hyper(0.3, "tensor")), hg.Hypers(),
                              hg.Data([tasks[0]], tasks[0]), horizon=3, settings=hg.Settings(trace=trace))
        stacked = stack_problems([ref.with_data(hg.Data([b], b)) for b in tasks])
        out.append(hg.estimate("rmd", stacked, stacked.init_hparams()).value)
        assert stacked.diagnostics()["forward"]["train"] == ("traced" if trace else
                                                             "module: tracing is off (Settings(trace=False))")
    assert Traced.matches(out[0], out[1])
