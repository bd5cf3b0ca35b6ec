"""Meta-learning episodes: task sampling, meta-learners × every online estimator, Reptile / first-order
MAML, meta-test confidence intervals, and bit-for-bit reproducibility on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from hypergradient.drivers import confidence_interval, meta_test, meta_train
from hypergradient.estimators import REGISTRY
from hypergradient.learners import ANIL, MetaSGD, MetaWeightNet, SinusoidTasks, WarpGrad, WeightNet, anil_mlp, warp_mlp




def tasks():
    return SinusoidTasks(dtype=torch.float64)


LEARNERS = {
    "anil": lambda T: ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=T),
    "metasgd": lambda T: MetaSGD(anil_mlp((1, 8, 1), act=torch.nn.Tanh).double(), horizon=T),
    "warpgrad": lambda T: WarpGrad(warp_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=T),
    "mwn": lambda T: MetaWeightNet(anil_mlp((1, 8, 1), act=torch.nn.Tanh).double(), net=WeightNet(hidden=6), horizon=T),
}
# every online estimator, IFT once per solver; options keep the implicit solves cheap
OPTIONS = {"hyperdistill": [{"gamma": 0.9}], "evograd": [{"sigma": 0.01}],
           "ift": [{"solver": "neumann", "maxiter": 2}, {"solver": "cg", "maxiter": 3}, {"solver": "dense", "window": 1}]}
ONLINE = [(k, o) for k, c in sorted(REGISTRY.items()) if c.online for o in OPTIONS.get(k, [{}])]


def test_sinusoid_tasks():
    s = SinusoidTasks()
    a, b = s.sample(torch.Generator().manual_seed(0)), s.sample(torch.Generator().manual_seed(0))
    assert torch.equal(a.support[0], b.support[0]) and torch.equal(a.query[1], b.query[1])
    assert a.support[0].shape == (10, 1) and a.query[0].shape == (10, 1) and a.support[0].dtype == torch.float32
    g = torch.Generator().manual_seed(1)
    many = [s.sample(g) for _ in range(300)]
    amp = torch.tensor([t.info["amplitude"] for t in many])
    ph = torch.tensor([t.info["phase"] for t in many])
    xs = torch.cat([t.support[0] for t in many])
    assert 0.1 <= amp.min() and amp.max() <= 5 and 0 <= ph.min() and ph.max() <= math.pi
    assert -5 <= xs.min() and xs.max() <= 5 and xs.min() < -4.5 and xs.max() > 4.5
    t = many[0]
    torch.testing.assert_close(t.support[1].double(),
                               t.info["amplitude"] * torch.sin(t.support[0].double() - t.info["phase"]),
                               rtol=1e-6, atol=1e-6)


def test_learners_split_the_model():
    lam = LEARNERS["anil"](3).init_hparams()
    assert sorted(lam) == sorted(f"model.body.{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias"))
    warp = LEARNERS["warpgrad"](3)
    assert all(k.startswith("model.warp") for k in warp.init_hparams())
    assert all(n.startswith("task") for n in warp.weight_names)
    assert len(warp.init_hparams()) == 2 * 2 * 2          # 2 hidden layers × 2 warp layers × (weight, bias)
    msgd = LEARNERS["metasgd"](3)
    lam = msgd.init_hparams()
    assert all(k.startswith("optim.lr[") for k in lam)
    assert lam["optim.lr[head.weight]"].shape == msgd.init_weights()["head.weight"].shape
    mwn = LEARNERS["mwn"](3).init_hparams()
    assert all(k.startswith("loss.mwn.") for k in mwn)


@pytest.mark.parametrize("estimator,options", ONLINE, ids=[k + "".join(f"-{v}" for v in o.values()) for k, o in ONLINE])
@pytest.mark.parametrize("learner", list(LEARNERS))
def test_every_learner_with_every_online_estimator(learner, estimator, options):
    T = 3
    L = LEARNERS[learner](T)
    lam = L.init_hparams()
    before = {k: v.detach().clone() for k, v in lam.items()}
    phi0 = L.init_weights()
    outer = torch.optim.Adam(lam.values(), lr=1e-2)
    if learner == "metasgd" and not REGISTRY[estimator].optimizer_hparams:
        with pytest.raises(ValueError, match="cannot differentiate optimizer hyperparameters"):
            meta_train(L, estimator, lam, outer, tasks(), iterations=1, meta_batch=2, **options)
        return
    res = meta_train(L, estimator, lam, outer, tasks(), iterations=2, meta_batch=2, **options)
    assert len(res.history["val_loss"]) == 2 * T and len(res.history["meta_val_loss"]) == 2
    assert all(bool(torch.isfinite(v).all()) for v in lam.values())
    changed = any(not torch.equal(before[k], lam[k].detach()) for k in lam)
    if estimator == "first_order" and learner in ("metasgd", "mwn"):
        assert not changed            # no direct term: first order leaves these λ where they are
    else:
        assert changed
    assert any(not torch.equal(phi0[n], res.init[n]) for n in phi0)      # Reptile moved φ


def test_reptile_and_first_order_maml():
    T = 4
    L = LEARNERS["anil"](T)
    lam = L.init_hparams()
    frozen = torch.optim.SGD(lam.values(), lr=0.0)          # λ fixed: w_T is a plain inner run
    phi = L.init_weights()
    task = tasks().sample(torch.Generator().manual_seed(7))
    p = L.problem(task)
    sT, _ = p.run(p.init_state(phi), {k: v.detach() for k, v in lam.items()}, T)
    w_T = p.params_dict(sT)
    res = meta_train(L, "one_step", lam, frozen, tasks(), iterations=1, meta_batch=1, seed=7, init_lr=0.5)
    for n in phi:
        torch.testing.assert_close(res.init[n], phi[n] - 0.5 * (phi[n] - w_T[n]), rtol=1e-13, atol=1e-14)
    _, alpha, _ = p.val_grad(sT, lam, wrt_lam=False)
    res = meta_train(L, "one_step", lam, frozen, tasks(), iterations=1, meta_batch=1, seed=7, init_lr=0.1,
                     init_update="fomaml")
    for n, a in zip(p.names, alpha):
        torch.testing.assert_close(res.init[n], phi[n] - 0.1 * a, rtol=1e-13, atol=1e-14)
    res = meta_train(L, "one_step", lam, frozen, tasks(), iterations=1, meta_batch=1, init_update=None)
    assert all(torch.equal(res.init[n], phi[n]) for n in phi)
    with pytest.raises(ValueError, match="init_update"):
        meta_train(L, "one_step", lam, frozen, tasks(), iterations=1, init_update="imaml")


def test_meta_test_reports_a_95_percent_interval():
    mean, half = confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and math.isclose(half, 1.959963984540054 * math.sqrt(5 / 3) / 2)
    assert confidence_interval([3.0]) == (3.0, 0.0)
    L = LEARNERS["anil"](3)
    lam, phi = L.init_hparams(), L.init_weights()
    r = meta_test(L, lam, phi, tasks(), tasks=40)
    assert r.values.shape == (40,) and math.isclose(r.mean, r.values.mean().item())
    assert math.isclose(r.ci95, 1.959963984540054 * r.values.std().item() / math.sqrt(40))
    again = meta_test(L, lam, phi, tasks(), tasks=40)
    assert torch.equal(r.values, again.values)
    acc = meta_test(L, lam, phi, tasks(), tasks=5, metric=lambda p, s, l: 1.0)
    assert acc.mean == 1.0 and acc.ci95 == 0.0


@pytest.mark.parametrize("estimator,options", [("hyperdistill", {"gamma": 0.9, "period": 1}),
                                               ("evograd", {"sigma": 0.01, "population": 3})])
def test_meta_training_is_reproducible_bit_for_bit(estimator, options):
    def run():
        torch.manual_seed(0)
        L = LEARNERS["anil"](4)
        lam = L.init_hparams()
        res = meta_train(L, estimator, lam, torch.optim.Adam(lam.values(), lr=1e-2), tasks(), iterations=3,
                         meta_batch=3, seed=11, **options)
        return lam, res
    (lam1, r1), (lam2, r2) = run(), run()
    assert all(torch.equal(lam1[k], lam2[k]) for k in lam1)
    assert all(torch.equal(r1.init[k], r2.init[k]) for k in r1.init)
    assert r1.history == r2.history
