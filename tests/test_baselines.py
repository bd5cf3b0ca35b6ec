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
