"""Antithetic evolution strategies (``es``, issue 16): unbiased for the smoothed gradient, whose closed
form on an inner problem quadratic in λ is the exact gradient; antithetic pairs cancel the even-order
terms (each pair's slope is ⟨∇f, ε⟩ exactly there)."""

from __future__ import annotations

import pytest
import torch

import hypergradient as hg
from hypergradient.testing import problems as ref

from conftest import rel_err


def test_antithetic_pairs_cancel_even_orders_on_a_quadratic():
    """w_T is affine in λ and L_val quadratic in w: f is quadratic in λ, so (f(λ+σε) − f(λ−σε))/2σ is
    ⟨∇f, ε⟩ to rounding for any σ, even a large one."""
    p = ref.linear()
    lam = p.init_hparams()
    exact = hg.estimate("rmd", p, lam).value["loss.scale"]
    for sigma in (1e-3, 1.0):
        h = hg.estimate("es", p, lam, population=5, sigma=sigma, seed=3)
        gen = torch.Generator().manual_seed(3)
        for slope in h.info["slopes"]:
            eps = torch.randn(lam["loss.scale"].shape, generator=gen, dtype=torch.float64)
            assert abs(float(slope) - float((exact * eps).sum())) < 1e-9 * float(exact.norm())


def test_unbiased_within_standard_errors():
    """The mean of 60 independent estimates (8 pairs each) is within 4 standard errors of the exact
    gradient, coordinate by coordinate, and the error shrinks like 1/√(population)."""
    p = ref.linear()
    lam = p.init_hparams()
    exact = hg.estimate("rmd", p, lam).value["loss.scale"]
    est = hg.estimators.get("es", population=8, sigma=0.05, seed=11)
    memory = est.new_state()
    samples = torch.stack([est(p, lam, est_state=memory).value["loss.scale"] for _ in range(60)])
    mean, se = samples.mean(0), samples.std(0) / 60 ** 0.5
    assert bool(((mean - exact).abs() <= 4 * se).all()), ((mean - exact) / se)
    big = hg.estimators.get("es", population=64, sigma=0.05, seed=12)
    assert rel_err(big(p, lam).value, {"loss.scale": exact}) < rel_err(est(p, lam).value, {"loss.scale": exact}) + 0.2


def test_direct_term_exact_and_cost():
    p = ref.mlp(T=4)
    lam = p.init_hparams()
    h = hg.estimate("es", p, lam, population=3)
    r = hg.estimate("rmd", p, lam)
    for k in lam:
        torch.testing.assert_close(h.direct[k], r.direct[k], rtol=1e-12, atol=1e-14)
    assert h.cost.steps == (2 * 3 + 1) * 4 and h.cost.val_grads == 1 and h.cost.vjps == 0


def test_options_checked():
    for bad in (dict(population=0), dict(sigma=0.0), dict(sigma=-1.0)):
        with pytest.raises(ValueError):
            hg.estimators.get("es", **bad)
