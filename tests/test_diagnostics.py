"""Diagnostics: cosine to exact RMD, hypervariance and sign fluctuation (ALGORITHMS.md §2), and the
saved-tensor meter used by the memory tests."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.diagnostics import SavedTensorMeter, cosine, cosine_to_rmd, jitter, spread, under_randomness

from conftest import make_problem


def test_cosine():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine({"a": torch.tensor([1.0]), "b": torch.tensor([1.0])}, torch.tensor([1.0, -1.0])) == pytest.approx(0.0)
    assert cosine(torch.zeros(3), torch.ones(3)) == 0.0


def test_cosine_to_rmd():
    problem = make_problem("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8)), T=5)
    lam = problem.init_hparams()
    for c in cosine_to_rmd("fmd", problem, lam, [1, 3, 5]):
        assert c == pytest.approx(1.0, abs=1e-12)
    one = cosine_to_rmd("one_step", problem, lam, [1, 3, 5], part="indirect")
    assert one[0] == pytest.approx(1.0, abs=1e-12)   # horizon 1: one step is exact
    assert all(-1 <= c < 1 - 1e-6 for c in one[1:])
    assert cosine_to_rmd("first_order", problem, lam, [3], part="indirect") == [0.0]


def test_spread_on_known_samples():
    x = torch.tensor([[1.0, -2.0], [2.0, -1.0], [3.0, -3.0], [-1.0, -2.0]])
    s = spread(x)
    std = torch.tensor([math.sqrt(((x[:, 0] - 1.25) ** 2).sum() / 3), 1 / math.sqrt(1.5)])
    torch.testing.assert_close(s["hypervariance"], std / torch.tensor([1.25, 2.0]))
    torch.testing.assert_close(s["sign_fluctuation"], torch.tensor([0.25, 0.0]))
    with pytest.raises(ValueError):
        spread(x[:1])


def test_under_randomness_one_source_at_a_time():
    """A problem whose every source of randomness is seeded; each perturbed alone."""
    g0 = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 3, generator=g0), torch.randint(0, 2, (64,), generator=g0)

    def run(seeds):
        gt, gv = torch.Generator().manual_seed(seeds["train"]), torch.Generator().manual_seed(seeds["val"])
        it, iv = torch.randperm(64, generator=gt)[:16], torch.randperm(64, generator=gv)[:16]
        torch.manual_seed(seeds["init"])
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])  # noqa: E731
        problem = hg.InnerProblem(model, ce, ce, hg.optim.sgd(lr=Hyper(0.3)), hg.Hypers(),
                                  hg.Data([(X[it[:8]], y[it[:8]]), (X[it[8:]], y[it[8:]])], (X[iv], y[iv])),
                                  horizon=4)
        lam = jitter(problem.init_hparams(), seeds["hparams"])
        return hg.estimate("fmd", problem, lam)

    out = under_randomness(run, n=4)
    assert set(out) == {"train", "val", "init", "hparams"}
    for src, s in out.items():
        assert s["hypervariance"].shape == (1,) and bool(torch.isfinite(s["hypervariance"]).all()), src
        assert 0 <= float(s["sign_fluctuation"]) <= 0.5
    # ±1% on λ barely moves a smooth hypergradient; resampling the data does
    assert float(out["hparams"]["hypervariance"]) < 0.05
    assert float(out["hparams"]["hypervariance"]) < float(out["train"]["hypervariance"])
    with pytest.raises(ValueError, match="unknown source"):
        under_randomness(run, n=2, sources=["weather"])


def test_jitter():
    lam = {"a": torch.tensor([1.0, 2.0], requires_grad=True)}
    assert torch.equal(jitter(lam, 0)["a"], lam["a"].detach())
    j = jitter(lam, 3, rel=0.01)["a"]
    assert j.requires_grad and bool(((j / lam["a"] - 1).abs() <= 0.01).all()) and not torch.equal(j, lam["a"])


def test_saved_tensor_meter():
    W = torch.randn(5, 5, requires_grad=True)
    with SavedTensorMeter() as m:
        y = torch.tanh(W @ torch.randn(5)).pow(2).sum()
        assert m.live > 0
        y.backward()
        del y
    assert m.peak > 0 and m.live == 0
