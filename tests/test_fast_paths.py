"""The speed-ups keep results: SGD's foreach path equals its per-tensor loop (values bitwise, with
or without autograd; derivatives to rounding), and FunctionalModel's precomputed ties equal ``functional_call(tie_weights=True)``."""

import copy
import itertools

import pytest
import torch
from torch import nn

import hypergradient.optim.sgd as sgd_module
from hypergradient.functional import FunctionalModel
from hypergradient.optim import SGD
from hypergradient.optim.base import FOREACH_GRAD_MAX_NUMEL

SHAPES = [(4, 3), (4,), (2, 4), (2,)]


def _hp(kind, value, dtype, gen):
    if kind == "float":
        return (value,) * len(SHAPES)
    if kind == "tensor":
        return tuple(torch.tensor(value * (1 + i), dtype=dtype) for i in range(len(SHAPES)))
    return tuple(value * torch.rand(s, generator=gen, dtype=dtype) for s in SHAPES)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_foreach_path_is_bitwise_the_loop(dtype, nesterov, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    params = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES)
    grads = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES)
    bufs = sgd_module.SGDState(tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES))
    opt = SGD(nesterov=nesterov)
    cases = itertools.product(["float", "tensor", "element"], [0.0, 0.9], [0.0, 0.1], [0.0, 1e-2], ["float", "tensor"])
    for lr_kind, mom, damp, wd, other_kind in cases:
        if nesterov and (mom == 0.0 or damp != 0.0):
            continue
        hp = {"lr": _hp(lr_kind, 0.1, dtype, gen), "momentum": _hp(other_kind, mom, dtype, gen),
              "dampening": _hp(other_kind, damp, dtype, gen), "weight_decay": _hp(other_kind, wd, dtype, gen)}
        for t in (1, 2):
            with torch.no_grad():
                assert sgd_module.foreach_ok((params, grads, bufs.momentum_buffer), tuple(hp.values()))
                fast = opt.update(grads, bufs, params, hp, t)
                monkeypatch.setattr(sgd_module, "foreach_ok", lambda *a: False)
                slow = opt.update(grads, bufs, params, hp, t)
                monkeypatch.undo()
            for a, b in zip(fast[0] + fast[1].momentum_buffer, slow[0] + slow[1].momentum_buffer):
                assert torch.equal(a, b), (lr_kind, mom, damp, wd, other_kind, t)


def test_foreach_path_alignment_checks():
    p = (torch.zeros(3, requires_grad=True),)
    assert sgd_module.foreach_ok((p,), ())                      # autograd on: still allowed
    assert not sgd_module.foreach_ok((p,), ((1.0, 2.0),))       # misaligned hyperparameter
    assert not sgd_module.foreach_ok((p, (torch.zeros(3, dtype=torch.float32),)), ())  # mixed dtypes
    big = (torch.zeros(FOREACH_GRAD_MAX_NUMEL + 1),)
    assert not sgd_module.foreach_ok((big,), ())                # large tensors under autograd: the loop
    with torch.no_grad():
        assert sgd_module.foreach_ok((big,), ())


def test_foreach_path_not_taken_inside_torch_func_transforms():
    seen = []

    def f(x):
        seen.append(sgd_module.foreach_ok(((x,),), ()))
        return x.sum()
    torch.func.grad(f)(torch.zeros(3))
    assert seen == [False]


@pytest.mark.parametrize("lr_kind", ["tensor", "element"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_foreach_path_differentiates_like_the_loop(lr_kind, nesterov, monkeypatch):
    """With autograd on, the foreach path gives the loop's values bitwise and its first and second
    derivatives (w.r.t. learnable lr, momentum and the weights) to rounding."""
    dtype = torch.float64
    gen = torch.Generator().manual_seed(1)
    params0 = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES)
    grads0 = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES)
    bufs0 = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES)
    lr0 = _hp(lr_kind, 0.1, dtype, gen)
    mom0 = _hp("tensor", 0.9, dtype, gen)

    def run(fast):
        params = tuple(p.clone().requires_grad_() for p in params0)
        lr = tuple(x.clone().requires_grad_() for x in lr0)
        mom = tuple(x.clone().requires_grad_() for x in mom0)
        grads = tuple(g * p for g, p in zip(grads0, params))      # the gradient depends on w
        hp = {"lr": lr, "momentum": mom, "dampening": (0.0,) * len(SHAPES), "weight_decay": (1e-2,) * len(SHAPES)}
        if not fast:
            monkeypatch.setattr(sgd_module, "foreach_ok", lambda *a: False)
        new_p, st = SGD(nesterov=nesterov).update(grads, sgd_module.SGDState(bufs0), params, hp, 2)
        monkeypatch.undo()
        out = sum((x ** 2).sum() for x in new_p + st.momentum_buffer)
        d = torch.autograd.grad(out, lr + mom + params, create_graph=True)
        dd = torch.autograd.grad(sum(x.sum() for x in d), lr + mom + params, allow_unused=True,
                                 materialize_grads=True)
        return [x.detach() for x in new_p + st.momentum_buffer], [x.detach() for x in d], list(dd)

    assert sgd_module.foreach_ok((params0, grads0, bufs0), (lr0, mom0))
    fast, slow = run(True), run(False)
    for a, b in zip(fast[0], slow[0]):
        assert torch.equal(a, b)
    for a, b in zip(fast[1] + fast[2], slow[1] + slow[2]):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


class _SharedWeight(nn.Module):
    """One Parameter object assigned to two modules, and one module reachable under two names."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight
        self.c = self.a
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.c(torch.tanh(self.b(self.a(x))))))


def test_ties_are_kept():
    """Every alias of a shared tensor gets the value passed for it; the meta skeleton alone loses a
    Parameter shared by two modules, so the ties are read from the user's module."""
    torch.manual_seed(0)
    m = _SharedWeight().double()
    fm = FunctionalModel(m)
    params = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    assert set(params) == {"a.weight", "a.bias", "b.bias", "out.weight", "out.bias"}
    x = torch.randn(5, 3, dtype=torch.float64)
    out, _ = fm(params, {}, (x,))
    ref = copy.deepcopy(m)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(params[n])
    assert ref.a.weight is ref.b.weight
    torch.testing.assert_close(out, ref(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="tied"):
        fm({**params, "b.weight": params["a.weight"] + 1}, {}, (x,))
