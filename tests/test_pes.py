"""Persistent evolution strategies (``pes``, issue 16): unbiased for the gradient through every step
since the start where truncated ES is biased (it sees the last K steps only); with K = T it is ``es``."""

from __future__ import annotations

import pytest
import torch

import hypergradient as hg
from hypergradient.testing import problems as ref

from conftest import rel_err


def _samples(est, problem, lam, T, n):
    memory = est.new_state()
    return torch.stack([next(iter(est(problem, lam, T=T, est_state=memory).value.values())) for _ in range(n)])


def test_pes_unbiased_where_truncated_es_is_biased():
    """On a problem quadratic in λ (smoothing changes no gradient), at t = 20 after four truncations of
    5 steps: the mean of PES is within 4 standard errors of the exact dL_val(w_20)/dλ (rmd), truncated ES
    is within 4 of truncated_rmd(K=5) and more than 10 away from the exact gradient."""
    p = ref.linear(T=20)
    lam = p.init_hparams()
    exact = hg.estimate("rmd", p, lam).value["loss.scale"]
    trunc = hg.estimate("truncated_rmd", p, lam, K=5).value["loss.scale"]
    for persistent, target in ((True, exact), (False, trunc)):
        s = _samples(hg.estimators.get("pes", K=5, population=8, sigma=0.05, persistent=persistent), p, lam, 20, 40)
        z = (s.mean(0) - target) / (s.std(0) / 40 ** 0.5)
        assert float(z.abs().max()) < 4, (persistent, z)
        if not persistent:
            far = (s.mean(0) - exact) / (s.std(0) / 40 ** 0.5)
            assert float(far.abs().max()) > 10


def test_one_truncation_is_es():
    p = ref.linear(T=20)
    lam = p.init_hparams()
    a = hg.estimate("pes", p, lam, K=20, population=4, sigma=0.1, seed=5)
    b = hg.estimate("es", p, lam, population=4, sigma=0.1, seed=5)
    assert rel_err(a.value, b.value) < 1e-12


def test_online_truncations_and_inactive_steps():
    p = ref.linear(T=7)
    lam = p.init_hparams()
    est = hg.estimators.get("pes", K=3, population=2)
    state = p.init_state()
    carry = est.online_init(p, lam, state, est.new_state())
    active = []
    for _ in range(7):
        h, carry = est.online_step(p, lam, state, carry)
        state = h.state
        active.append(h.active)
    assert active == [False, False, True, False, False, True, True]   # the horizon closes the last one
    assert h.cost.steps == 2 * 2 + 1 and h.cost.val_grads == 1


def test_options_checked():
    for bad in (dict(K=0), dict(population=0), dict(sigma=0.0)):
        with pytest.raises(ValueError):
            hg.estimators.get("pes", **bad)


def test_influence_balancing_truncation_flips_the_sign_pes_does_not():
    """``testing.problems.influence_balancing``: θ's long-run influence (+7.86, rmd) has the opposite
    sign of its short-run one; truncated backprop and truncated ES over K = 2 steps are negative, PES over
    the same truncations is within 4 standard errors of the exact value (results/pes/ plots every K)."""
    p = ref.influence_balancing()
    lam = p.init_hparams()
    exact = float(hg.estimate("rmd", p, lam).value["loss.theta"])
    assert exact > 5 and float(hg.estimate("truncated_rmd", p, lam, K=2).value["loss.theta"]) < 0
    for persistent in (True, False):
        s = _samples(hg.estimators.get("pes", K=2, population=8, sigma=0.05, persistent=persistent, seed=1),
                     p, lam, p.horizon, 16)
        mean, se = float(s.mean()), float(s.std() / 4)
        if persistent:
            assert abs(mean - exact) < 4 * se, (mean, se, exact)
        else:
            assert mean + 4 * se < 0, (mean, se)
