"""The flat layout (hypergradient.core.flat): Φ on one buffer equals Φ per tensor, values and gradients."""

import pytest
import torch

import hypergradient as hg
from hypergradient.core.flat import FlatLayout
from hypergradient.optim import SGD
from hypergradient.core.state import State

from conftest import make_problem, mlp

SHAPES = [(3, 2), (3,), (1, 3)]
LAY = FlatLayout(SHAPES, torch.float64, torch.device("cpu"))


def test_pack_unpack_round_trip_and_views():
    xs = [torch.randn(s) for s in SHAPES]
    flat = LAY.pack(xs)
    assert flat.shape == (12,)
    back = LAY.unpack(flat)
    assert all(torch.equal(a, b) for a, b in zip(back, xs))
    assert all(b.data_ptr() >= flat.data_ptr() and b.is_contiguous() for b in back)  # views, not copies
    assert LAY.pack_fields([xs, ()])[1] == () and LAY.unpack_fields([(flat,), ()])[0][2].shape == (1, 3)


def test_spread_keeps_shared_values_and_spreads_the_rest():
    s = torch.tensor(0.5)
    assert LAY.spread((0.1, 0.1, 0.1)) == 0.1
    assert LAY.spread((s, s, s)) is s
    mixed = LAY.spread((0.1, torch.tensor(2.0), 0.3))
    assert torch.equal(mixed, torch.tensor([0.1] * 6 + [2.0] * 3 + [0.3] * 3))
    rows = torch.tensor([[1.0], [2.0], [3.0]])  # broadcasts against (3, 2)
    el = LAY.spread((rows, torch.arange(3.0), torch.zeros(1, 3)))
    assert torch.equal(el, torch.tensor([1.0, 1, 2, 2, 3, 3, 0, 1, 2, 0, 0, 0]))


def test_spread_is_differentiable():
    a, b = torch.tensor(2.0, requires_grad=True), torch.ones(3, requires_grad=True)
    out = LAY.spread((a, b, 0.0))
    ga, gb = torch.autograd.grad((out * torch.arange(12.0)).sum(), (a, b))
    assert ga.item() == sum(range(6)) and torch.equal(gb, torch.tensor([6.0, 7, 8]))


CASES = [
    ("sgd", dict(lr=hg.Hyper(0.1, "tensor"), momentum=0.9, weight_decay=hg.Hyper(1e-2)), {}),
    ("sgd", dict(lr=hg.Hyper(0.1, "element", positive="softplus"), momentum=hg.Hyper(0.5, "tensor"),
                 dampening=0.1), {}),
    ("sgd", dict(lr=hg.Hyper(0.1, "tensor", schedule=3), momentum=0.9), {"nesterov": True}),
    ("adam", dict(lr=hg.Hyper(0.01, "tensor"), beta1=hg.Hyper(0.9, "tensor"), weight_decay=1e-2), {"amsgrad": True}),
    ("adamw", dict(lr=hg.Hyper(0.01, positive="exp", schedule=2), weight_decay=hg.Hyper(1e-2, "tensor")), {}),
    ("rmsprop", dict(lr=hg.Hyper(0.01, "element"), momentum=0.5, alpha=0.9), {"centered": True}),
    ("adagrad", dict(lr=hg.Hyper(0.05, "tensor"), lr_decay=1e-2), {}),
]


def _case(opt, hparams, options):
    hparams = {k: v for k, v in hparams.items() if v is not None}
    return make_problem(opt, hparams, model=mlp((4, 5, 5, 3)), options=options, T=6)


@pytest.mark.parametrize("opt,hparams,options", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_flat_unroll_equals_per_tensor_steps(opt, hparams, options):
    pb = _case(opt, hparams, options)
    assert pb.layout is not None
    lam = pb.init_hparams()
    s1, _ = pb.run(pb.init_state(), lam, 2)  # start mid-run: nonzero optimizer state, t > 0

    def outcome(layout):
        pb.layout = layout
        s0 = s1.detach(requires_grad=True)
        lam_d = {k: v.detach().requires_grad_() for k, v in lam.items()}
        with torch.enable_grad():
            sT = pb.unroll(s0, lam_d, 4)
            L = pb.val_loss_at(sT, lam_d) + sum((x ** 2).sum() for x in sT.tensors())
            grads = torch.autograd.grad(L, s0.tensors() + list(lam_d.values()), allow_unused=True,
                                        materialize_grads=True)
        return sT, grads

    layout = pb.layout
    flat_s, flat_g = outcome(layout)
    ref_s, ref_g = outcome(None)
    assert flat_s.t == ref_s.t == 6 and len(flat_s.tensors()) == len(ref_s.tensors())
    for a, b in zip(flat_s.tensors(), ref_s.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert any(g.abs().sum() > 0 for g in ref_g)
    for a, b in zip(flat_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("layout", ["flat", "tensors"])
def test_hyperparameters_resolved_once_per_schedule_window(monkeypatch, layout):
    for schedule, windows in ((None, 1), (3, 3)):
        pb = make_problem("sgd", dict(lr=hg.Hyper(0.1, "tensor", schedule=schedule, positive="softplus")),
                          model=mlp((4, 5, 5, 3)), T=6, layout=layout)
        assert (pb.layout is None) == (layout == "tensors")
        calls = []
        orig = pb.spec.coefficients
        monkeypatch.setattr(pb.spec, "coefficients", lambda lam, t: calls.append(t) or orig(lam, t))
        with torch.enable_grad():
            pb.unroll(pb.init_state(), pb.init_hparams(), 6)
        assert len(calls) == windows, (schedule, calls)


class ClipByNorm(SGD):
    """Not elementwise: scales each tensor's step by its norm."""

    elementwise = False

    def update(self, grads, state, params, hp, t):
        grads = tuple(g / (1 + g.norm()) for g in grads)
        return super().update(grads, state, params, hp, t)


def test_optimizer_that_is_not_elementwise_keeps_the_per_tensor_layout():
    pb = make_problem(ClipByNorm(), dict(lr=hg.Hyper(0.1, "tensor")))
    assert pb.layout is None
    lam = pb.init_hparams()
    with torch.enable_grad():
        s = pb.unroll(pb.init_state(), lam, 3)
    ref, _ = pb.run(pb.init_state(), lam, 3)
    assert isinstance(s, State) and all(torch.equal(a, b) for a, b in zip(s.params, ref.params))
    h = hg.estimate("rmd", pb, lam, T=3)
    assert torch.isfinite(h.flat()).all()


def test_mixed_dtypes_keep_the_per_tensor_layout():
    model = mlp()
    model[0].bias.data = model[0].bias.data.float()
    pb = make_problem("sgd", dict(lr=0.1), model=model)
    assert pb.layout is None


def test_layout_option():
    big = mlp((4, 200, 200, 3))
    sizes = [p.numel() for p in big.parameters()]
    from hypergradient.core.problem import FLAT_MAX_MEAN
    assert sum(sizes) / len(sizes) <= FLAT_MAX_MEAN
    huge = mlp((4, 400, 400, 3))
    sizes = [p.numel() for p in huge.parameters()]
    assert sum(sizes) / len(sizes) > FLAT_MAX_MEAN
    assert make_problem("sgd", dict(lr=0.1), model=big).layout is not None        # auto: small tensors
    assert make_problem("sgd", dict(lr=0.1), model=huge).layout is None           # auto: large tensors
    assert make_problem("sgd", dict(lr=0.1), model=huge, layout="flat").layout is not None
    assert make_problem("sgd", dict(lr=0.1), layout="tensors").layout is None
    with pytest.raises(ValueError, match="elementwise"):
        make_problem(ClipByNorm(), dict(lr=0.1), layout="flat")
    with pytest.raises(ValueError, match="layout must be one of"):
        make_problem("sgd", dict(lr=0.1), layout="packed")


def test_rmd_is_the_same_on_both_layouts():
    """Every storage policy gives the same hypergradient on the flat and the per-tensor layout."""
    out = {}
    for layout in ("flat", "tensors"):
        pb = make_problem("sgd", dict(lr=hg.Hyper(0.1, "tensor"), momentum=0.9, weight_decay=hg.Hyper(1e-2)),
                          model=mlp((4, 5, 5, 3)), T=6, layout=layout)
        lam = pb.init_hparams()
        for storage in ("graph", "recompute", "checkpoint"):
            out[layout, storage] = hg.estimate("rmd", pb, lam, T=6, storage=storage).flat()
    ref = out["tensors", "graph"]
    assert ref.abs().sum() > 0
    for k, v in out.items():
        torch.testing.assert_close(v, ref, rtol=1e-10, atol=1e-14, msg=str(k))
