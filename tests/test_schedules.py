"""The non-greedy reproduction (issue 17): the problem every method shares, ours following Algorithm 1,
the search box, the reports' statistics, the spread study's ground truth, resume and the refusal of
files written with another configuration. The paper-scale run is ``hypergradient reproduce schedules``."""

from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest
import torch

import hypergradient as hg
from hypergradient.reproduce import schedules as S

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d is not installed")


def tiny(**kw):
    base = dict(T=8, lr_values=2, outer_steps=2, hand_alpha0=(0.1,), hand_momentum=(0.0, 0.9), seeds=1,
                datasets=("digits",), spread_T=8, spread_values=2, spread_samples=2, spread_dataset="digits",
                spread_val_batch=64, width=16, cost_T=(4, 8), digits_train=300, digits_val=100, quick=True)
    base.update(kw)
    return S.SchedulesConfig(**base)


def test_mnist1d_is_generated_here_split_by_seed_and_leaves_the_global_generators_alone():
    np.random.seed(123)
    random.seed(7)
    a_np, a_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(7)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = hg.learners.data.mnist1d(seed=3, n_val=400)
    assert (np.random.rand(), random.random()) == (a_np, a_py)
    assert Xtr.shape == (3600, 40) and Xva.shape == (400, 40) and Xte.shape == (1000, 40)
    assert set(ytr.tolist()) == set(range(10))
    (Xtr2, _), _, (Xte2, _) = hg.learners.data.mnist1d(seed=4, n_val=400)
    assert torch.equal(Xte, Xte2) and not torch.equal(Xtr, Xtr2)        # the test set is fixed, the split moves


def test_every_method_shares_one_problem_and_lambda_starts_raw_at_zero():
    cfg = tiny()
    data = S.splits(cfg, "digits", 0)
    p = S.build(cfg, data, 0, cfg.lr_values)
    lam = p.init_hparams()
    assert {k: tuple(v.shape) for k, v in lam.items()} == {"optim.lr": (2,), "optim.momentum": (), "optim.weight_decay": ()}
    assert all(float(v.detach().abs().sum()) == 0 for v in lam.values())
    q = S.build(cfg, data, 0, cfg.T)
    assert all(torch.equal(a, b) for a, b in zip(p.init_state().params, q.init_state().params))   # same init
    flat = lambda box: [x for k in ("lr", "momentum", "weight_decay") for x in box[k]]  # noqa: E731
    assert flat(S.BOX(cfg)) == pytest.approx([-0.2, 0.2, -0.3, 0.3, -8e-4, 8e-4])
    assert flat(S.BOX(S.SchedulesConfig())) == pytest.approx([-1.0, 1.0, -1.5, 1.5, -4e-3, 4e-3])   # App. B


def test_ours_is_algorithm_1_sign_steps_of_the_clipped_forward_mode_hypergradient():
    cfg = tiny(outer_steps=1)
    data = S.splits(cfg, "digits", 0)
    rec = S.run_method("ours", cfg, "digits", 0, data)
    p = S.build(cfg, data, 0, cfg.lr_values)
    g = hg.estimate("fmd", p, p.init_hparams(), T=cfg.T, hvp_clip=cfg.hvp_clip).value
    assert rec["hparams"]["optim.lr"] == pytest.approx((-cfg.gamma_lr * torch.sign(g["optim.lr"])).tolist())
    # at λ = 0 the weights never move, so momentum and weight decay have exactly zero hypergradient: no step
    assert float(g["optim.momentum"]) == 0 and rec["hparams"]["optim.momentum"] == [0.0]
    assert len(rec["schedule"]["lr"]) == cfg.T and rec["step_equivalents"] > cfg.T


def test_random_search_and_tpe_spend_ours_budget():
    cfg = tiny()
    data = S.splits(cfg, "digits", 0)
    budget = {"step_equivalents": 10 * cfg.T, "seconds": 0.01}
    for m in ("random search", "TPE"):
        rec = S.run_method(m, cfg, "digits", 0, data, budget)
        assert rec["step_equivalents"] <= 10 * cfg.T and rec["trials_total"] >= rec["trials"] >= 1
        assert rec["at_equal_seconds"]["trials"] >= 1 and 0 <= rec["test_acc"] <= 1
    with pytest.raises(ValueError, match="needs ours' budget"):
        S.run_method("TPE", cfg, "digits", 0, data)


def test_ci95_uses_students_t_and_paired_differences():
    m, h = S.ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    from hypergradient.reproduce.common import paired as _paired
    assert _paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.1])["verdict"] == "ours better"
    assert _paired([2.0, 3.0, 4.0], [1.0, 4.0, 3.0])["verdict"] == "not significant"


def test_the_shared_spread_samples_are_exact_against_rmd():
    cfg = tiny()
    data = S.splits(cfg, "digits", 0, dtype=torch.float64)
    r = S.hypergradient_sample(cfg, data, "shared", "train", 0)
    assert r["rmd_rel_diff"] < 1e-10 and r["g"].shape == (cfg.spread_values,)
    greedy = S.hypergradient_sample(cfg, data, "greedy", "train", 0)["g"]
    unshared = S.hypergradient_sample(cfg, data, "non-greedy", "train", 0)["g"]
    assert greedy.shape == unshared.shape == (cfg.spread_T,)
    assert torch.allclose(greedy[-1], unshared[-1])     # the last step's lr: one step ahead either way


def test_run_resumes_from_its_files_and_refuses_another_configuration(tmp_path, monkeypatch):
    cfg = tiny()
    out = str(tmp_path / "run")
    res = S.run(cfg, out, quiet=True)
    assert set(res["table1"]["digits"]) == set(S.METHODS)
    assert (tmp_path / "run" / "table.md").exists() and (tmp_path / "run" / "fig2_spread.png").exists()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["goals"]

    def boom(*a, **k):
        raise AssertionError("a finished job was run again")
    monkeypatch.setattr("hypergradient.reproduce.schedules.runner.run_method", boom)
    monkeypatch.setattr("hypergradient.reproduce.schedules.runner.spread_job", boom)
    monkeypatch.setattr("hypergradient.reproduce.schedules.runner.cost_table", boom)
    again = S.run(cfg, out, quiet=True)
    from hypergradient.reproduce.common import clean
    assert json.dumps(clean(again["table1"])) == json.dumps(clean(res["table1"]))     # (nan == nan as text)
    with pytest.raises(RuntimeError, match="different configuration"):
        S.run(tiny(T=10), out, quiet=True)
