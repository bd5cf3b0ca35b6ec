"""The speed-ups keep results bitwise: SGD's foreach path (steps without autograd) equals its
per-tensor loop, and FunctionalModel's precomputed ties equal ``functional_call(tie_weights=True)``."""

import copy
import itertools

import pytest
import torch
from torch import nn

import hypergradient.optim.base as base_module
import hypergradient.optim.rules.sgd as sgd_module
from hypergradient.core.functional import FunctionalModel
from hypergradient.optim import SGD

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
                assert base_module.foreach_ok((params, grads, bufs.momentum_buffer), tuple(hp.values()))
                fast = opt.update(grads, bufs, params, hp, t)
                monkeypatch.setattr(base_module, "foreach_ok", lambda *a: False)
                slow = opt.update(grads, bufs, params, hp, t)
                monkeypatch.undo()
            for a, b in zip(fast[0] + fast[1].momentum_buffer, slow[0] + slow[1].momentum_buffer):
                assert torch.equal(a, b), (lr_kind, mom, damp, wd, other_kind, t)


def test_foreach_ops_save_more_for_backward_than_the_loop():
    """Why the foreach path stays off under autograd (see ``foreach_ok``): if this starts to fail,
    torch's foreach derivatives no longer over-save and the path may be enabled for graphs too."""
    xs = [torch.randn(50, requires_grad=True) for _ in range(3)]
    ys = [torch.randn(50, requires_grad=True) for _ in range(3)]

    def saves(f):
        n = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: n.append(1) or t, lambda t: t):
            f()
        return len(n)
    assert saves(lambda: [x + y for x, y in zip(xs, ys)]) == 0
    assert saves(lambda: torch._foreach_add(xs, ys)) > 0


def test_foreach_path_only_without_autograd():
    p = (torch.zeros(3, requires_grad=True),)
    assert not base_module.foreach_ok((p,), ())
    with torch.no_grad():
        assert base_module.foreach_ok((p,), ())
        assert not base_module.foreach_ok((p,), ((1.0, 2.0),))  # misaligned hyperparameter


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


class _Rebinds(nn.Module):
    """Rebinds a buffer in forward (``self.count = ...``) instead of updating it in place."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        return self.lin(x)


def test_slots_match_functional_call_and_leave_the_skeleton_empty():
    """FunctionalModel's own reparametrization gives functional_call's outputs and buffers (BatchNorm
    updating in place, a module rebinding a buffer, a parametrized weight) and always puts the
    skeleton's meta tensors back, after an error too."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), _RebindsInside(), nn.Linear(4, 2)).double()
    nn.utils.parametrizations.weight_norm(m[3])
    fm = FunctionalModel(m)
    params = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    buffers = {n: b.clone() for n, b in m.named_buffers()}
    x = torch.randn(6, 3, dtype=torch.float64)
    out, new = fm(params, buffers, (x,))
    ref_tensors = {**params, **{n: b.clone() for n, b in buffers.items()}}
    ref = torch.func.functional_call(m, ref_tensors, (x,))  # writes rebound buffers back into ref_tensors
    # weight_norm runs in plain ops (torch._weight_norm's double backward is wrong): equal to its kernel to 1 ulp
    torch.testing.assert_close(out, ref, rtol=2e-16, atol=5e-16)
    assert set(new) == set(buffers) and new["2.inner.count"].item() == 1.0
    for n in new:
        torch.testing.assert_close(new[n], ref_tensors[n], rtol=0, atol=0, msg=n)
    assert all(torch.equal(buffers[n], b) for n, b in m.named_buffers())  # inputs untouched
    home = lambda: all(t.is_meta for t in [*fm._skeleton.parameters(), *fm._skeleton.buffers()])  # noqa: E731
    assert home()
    with pytest.raises(RuntimeError):
        fm(params, buffers, (torch.randn(6, 5, dtype=torch.float64),))
    assert home()
    with pytest.raises(KeyError, match="no parameter or buffer"):
        fm({**params, "nope": x}, buffers, (x,))


class _RebindsInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _Rebinds()

    def forward(self, x):
        return self.inner(x[:, :3]).repeat(1, 2)[:, :4]
