"""Black-box baselines (issue 17, item 1): random search, a grid and TPE over the same InnerProblem and
box, at a budget in step-equivalents; diverged trials score a finite penalty; TPE resumes from a journal."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.baselines import Box, evaluate, grid_search, random_search, tpe_search

from conftest import make_problem

T = 6


def _problem():
    return make_problem("sgd", dict(lr=Hyper(0.01), momentum=Hyper(0.0), weight_decay=0.0), T=T)


def test_random_search_budget_determinism_and_improvement():
    p = _problem()
    boxes = {"lr": Box(1e-3, 1.0, log=True), "momentum": (0.0, 0.9)}
    a = random_search(p, boxes, budget=20 * T, seed=1)
    b = random_search(p, boxes, budget=20 * T, seed=1)
    assert len(a.trials) == 20 and a.steps == 20 * T                  # each trial T steps from problem.cost
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    lrs = [float(t.lam["optim.lr"]) for t in a.trials]
    assert all(1e-3 <= x <= 1.0 for x in lrs) and all(0.0 <= float(t.lam["optim.momentum"]) <= 0.9 for t in a.trials)
    init, _ = evaluate(p, p.init_hparams())
    assert a.best.value < init


def test_diverged_trials_score_a_finite_penalty():
    p = make_problem("sgd", dict(lr=Hyper(0.01)), T=T, divergence=hg.core.divergence.Divergence(factor=2.0))
    res = random_search(p, {"lr": (50.0, 200.0)}, budget=4 * T, seed=0, penalty=123.0)
    assert all(math.isfinite(t.value) for t in res.trials)
    assert any(t.diverged and t.value == 123.0 for t in res.trials)


def test_grid_is_every_combination_and_boxes_are_checked():
    p = _problem()
    res = grid_search(p, {"lr": [0.01, 0.1, 0.3], "optim.momentum": [0.0, 0.5]})
    assert len(res.trials) == 6
    assert {(round(float(t.lam["optim.lr"]), 6), float(t.lam["optim.momentum"])) for t in res.trials} == \
        {(a, b) for a in (0.01, 0.1, 0.3) for b in (0.0, 0.5)}
    with pytest.raises(ValueError, match="match no hyperparameter"):
        random_search(p, {"beta1": (0.0, 1.0)}, budget=T)
    with pytest.raises(ValueError, match="lo < hi"):
        Box(1.0, 0.5)


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna is not installed")
def test_tpe_resumes_from_its_journal(tmp_path):
    p = _problem()
    boxes = {"lr": Box(1e-3, 1.0, log=True), "momentum": (0.0, 0.9)}
    path = str(tmp_path / "tpe.log")
    first = tpe_search(p, boxes, budget=6 * T, seed=0, n_startup_trials=3, storage=path)
    assert len(first.trials) == 6 and first.info["optuna"]
    again = tpe_search(p, boxes, budget=10 * T, seed=0, n_startup_trials=3, storage=path)
    assert len(again.trials) == 10 and [t.number for t in again.trials] == list(range(10))
    assert [t.value for t in again.trials[:6]] == [t.value for t in first.trials]     # read back, not rerun
    whole = tpe_search(_problem(), boxes, budget=10 * T, seed=0, n_startup_trials=3)
    assert whole.best.value <= max(t.value for t in whole.trials)


def test_budgets_in_seconds_and_the_answer_at_an_equal_budget():
    p = _problem()
    res = random_search(p, {"lr": (1e-3, 0.5)}, budget=3 * T, seconds=0.05, seed=0)
    assert res.steps >= 3 * T and res.seconds >= 0.05                  # both budgets spent
    first = res.within(steps=3 * T)
    assert len(first) == 3 and res.best_within(steps=3 * T) == min(first, key=lambda t: t.value)
    assert len(res.within(steps=1)) == 1                                # at least one trial
    assert len(res.within(seconds=res.seconds)) == len(res.trials)
    with pytest.raises(ValueError, match="give a budget"):
        random_search(p, {"lr": (1e-3, 0.5)})


def test_step_equivalents_count_every_product():
    c = hg.Cost(steps=10, vjps=2, jvps=30, hvps=4, val_grads=1, grads=2)
    assert c.step_equivalents == 49
    p = _problem()
    lam = p.init_hparams()
    before = p.cost.step_equivalents
    hg.estimate("fmd", p, lam, T=T, closed_form=True)
    # T steps, 2 HVP columns at each step after the first (Z_0 = 0 needs no product), one validation gradient
    assert p.cost.step_equivalents - before == T + 2 * (T - 1) + 1


def test_grid_values_may_be_per_step_schedules_and_cosine_is_torchs():
    from hypergradient.baselines import cosine
    m = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T)
    torch_lrs = []
    for _ in range(T):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert cosine(0.4, T) == pytest.approx(torch_lrs, abs=1e-15)
    p = make_problem("sgd", dict(lr=Hyper(0.0, schedule=T, bounds=None), momentum=Hyper(0.0)), T=T)
    res = grid_search(p, {"lr": [cosine(a, T) for a in (0.05, 0.2)], "momentum": [0.0, 0.9]})
    assert len(res.trials) == 4
    assert res.trials[2].lam["optim.lr"].tolist() == pytest.approx(cosine(0.2, T))
    assert float(res.trials[3].lam["optim.momentum"]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="has 2 entries"):
        grid_search(p, {"lr": [[0.1, 0.2]]})


def test_greedy_hd_is_sgd_on_the_clipped_one_step_hypergradient():
    from hypergradient.baselines import greedy_hd
    p = _problem()
    lam = p.init_hparams()
    lam0 = {k: v.detach().clone() for k, v in lam.items()}
    g1 = hg.estimate("one_step", _problem(), lam0, T=1).value              # the greedy hypergradient at step 1
    with pytest.warns(UserWarning, match="ended worse"):      # a tiny clip: λ barely moves, the loss is noisy
        res = greedy_hd(p, lam, lr=0.2, clip=1e-3, T=T)
    assert not res.diverged and res.state.t == T and res.schedule["optim.lr"].shape == (T,)
    for k in lam:
        step1 = lam0[k] - 0.2 * g1[k].clamp(-1e-3, 1e-3)
        assert torch.allclose(res.schedule[k][1], step1, atol=1e-7), k     # λ used at step 2
        assert torch.allclose(res.schedule[k][0], lam0[k])
    assert res.cost.steps == T and res.cost.step_equivalents > T
