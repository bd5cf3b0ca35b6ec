"""Data-parallel meta-batches over torch.distributed (issue 19; ALGORITHMS.md §11): two spawned processes
joined by gloo over a file rendezvous (no ports) run float64 sinusoid ANIL (B = 4, 3 meta-iterations)
and must end where one process ends — λ, the initialization φ, the logged losses, the cost — for every
estimator that needs only the sum over tasks; gather mode bit for bit; an uneven split; B < W refused;
a divergence on one rank handled by the policy on both (no hang); resume with another world size; and
one run through the real ``torchrun``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from hypergradient.drivers.distributed import MetaBatch
from hypergradient.testing.distributed import run_case, spawn

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

FIRST_GROUP = [("rmd", {}, "reptile"), ("one_step", {}, "reptile"), ("first_order", {}, "fomaml"),
               ("online_rmd", {"window": 2}, "reptile"), ("rmd", {}, "maml")]


def close(a: dict, b: dict, rtol: float = 1e-10) -> None:
    for k in a:
        scale = max(float(a[k].abs().max()), 1e-300)
        assert float((a[k] - b[k]).abs().max()) <= rtol * scale, k


@pytest.mark.parametrize("est,options,init", FIRST_GROUP, ids=[f"{e}-{i}" for e, _, i in FIRST_GROUP])
def test_two_ranks_end_where_one_process_ends(tmp_path, est, options, init):
    case = {"estimator": est, "options": options, "init_update": init}
    one = run_case(case)
    ranks = spawn(2, case, str(tmp_path))
    assert all("lam" in r for r in ranks), ranks
    for r in ranks:
        close(one["lam"], r["lam"])
        close(one["phi"], r["phi"])
        assert r["meta_val_loss"] == pytest.approx(one["meta_val_loss"], rel=1e-10)
        assert r["cost"] == one["cost"]                             # counters summed over the ranks
    assert all(torch.equal(ranks[0]["lam"][k], ranks[1]["lam"][k]) for k in one["lam"])   # one λ on every rank


def test_gather_mode_is_bit_identical_and_an_uneven_split_agrees(tmp_path):
    for case in ({"estimator": "rmd", "gather": True}, {"estimator": "one_step", "gather": True}):
        one, (r0, _) = run_case(case), spawn(2, case, str(tmp_path / case["estimator"]))
        assert all(torch.equal(one["lam"][k], r0["lam"][k]) for k in one["lam"])
        assert all(torch.equal(one["phi"][k], r0["phi"][k]) for k in one["phi"])
        assert r0["meta_val_loss"] == one["meta_val_loss"] and r0["val_loss"] == one["val_loss"]
    case = {"estimator": "rmd", "B": 3}                             # tasks 0, 2 on rank 0; task 1 on rank 1
    one, ranks = run_case(case), spawn(2, case, str(tmp_path / "uneven"))
    close(one["lam"], ranks[1]["lam"])


def test_a_meta_batch_smaller_than_the_world_is_refused_on_every_rank(tmp_path):
    ranks = spawn(2, {"B": 1}, str(tmp_path))
    assert all(r.get("error") == "ValueError" and "cannot be spread over 2 ranks" in r["message"] for r in ranks)
    with pytest.raises(ValueError, match="meta_batch >= 3"):
        MetaBatch(0, 3).tasks(2)


def test_a_divergence_on_one_rank_follows_the_policy_on_both(tmp_path):
    """Task 1 (rank 1's) diverges at its second step: with "skip" both ranks leave it out of the same
    means as one process does; with "raise" rank 1 raises it and rank 0 stops too instead of hanging."""
    case = {"estimator": "one_step", "wild": 1, "divergence": "skip"}
    one, ranks = run_case(case), spawn(2, case, str(tmp_path / "skip"))
    assert one["divergence"] and ranks[0]["divergence"] == ranks[1]["divergence"] == one["divergence"]   # logged on both
    close(one["lam"], ranks[0]["lam"])
    ranks = spawn(2, {**case, "divergence": "raise"}, str(tmp_path / "raise"))
    assert [r.get("error") for r in ranks] == ["RankFailed", "DivergenceError"]
    ranks = spawn(2, {"estimator": "rmd", "wild": 1, "divergence": "raise"}, str(tmp_path / "offline"))
    assert [r.get("error") for r in ranks] == ["RankFailed", "DivergenceError"]


def test_an_error_in_one_ranks_set_up_stops_every_rank(tmp_path):
    """Task 1's NaN inputs are refused by the pre-flight check on rank 1 before any collective of the
    step; rank 0 must learn of it (RankFailed), not wait for rank 1 in the next all-reduce."""
    for est in ("online_rmd", "rmd", "first_order"):
        ranks = spawn(2, {"estimator": est, "poison": 1, "init_update": "fomaml"}, str(tmp_path / est))
        assert [r.get("error") for r in ranks] == ["RankFailed", "ValueError"], (est, ranks)


def test_a_checkpoint_resumes_with_another_number_of_ranks(tmp_path):
    ck = str(tmp_path / "run.pt")
    full = run_case({"estimator": "rmd"})
    part = spawn(2, {"estimator": "rmd", "checkpoint": ck, "interrupt_after": 2}, str(tmp_path / "w2"))
    assert all(r.get("interrupted") for r in part) and os.path.exists(ck)
    rest = run_case({"estimator": "rmd", "checkpoint": ck})
    close(full["lam"], rest["lam"])
    assert rest["meta_val_loss"] == pytest.approx(full["meta_val_loss"], rel=1e-10)
    # and the other way: written by one process, resumed by two ranks
    assert run_case({"estimator": "rmd", "checkpoint": str(tmp_path / "w1.pt"), "interrupt_after": 1})["interrupted"]
    ranks = spawn(2, {"estimator": "rmd", "checkpoint": str(tmp_path / "w1.pt")}, str(tmp_path / "w2c"))
    close(full["lam"], ranks[0]["lam"])
    close(full["lam"], ranks[1]["lam"])


def test_estimators_with_random_draws_are_refused_over_ranks(tmp_path):
    ranks = spawn(2, {"estimator": "evograd", "options": {"sigma": 0.01}}, str(tmp_path))
    assert all(r.get("error") == "ValueError" and "random numbers" in r["message"] for r in ranks)


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(
    sys.executable), "torchrun")), reason="torchrun is not on PATH")
def test_through_the_real_torchrun():
    exe = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([exe, "--standalone", "--nproc_per_node=2", "-m", "hypergradient.testing.distributed", "rmd"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    one = run_case({"estimator": "rmd"})
    norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in one["lam"].values())))
    assert f"world 2: |λ| = {norm:.12f}"[:-3] in out.stdout, (out.stdout, norm)


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(
    sys.executable), "torchrun")), reason="torchrun is not on PATH")
def test_a_reproduction_under_torchrun_shares_its_jobs_and_matches_one_process(tmp_path):
    """``torchrun --standalone --nproc_per_node=2 -m hypergradient reproduce NAME --quick``: the ranks share
    the jobs (one worker each), rank 0 writes the summary, equal to a one-process run's."""
    import json
    exe = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    out = subprocess.run([exe, "--standalone", "--nproc_per_node=2", "-m", "hypergradient", "reproduce", "rotation",
                          "--quick", "--out", str(two)], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "hypergradient", "reproduce", "rotation", "--quick", "--out", str(one)],
                   check=True, capture_output=True, timeout=300, env=env)
    a, b = (json.loads((d / "results.json").read_text())["rows"] for d in (two, one))
    drop = lambda rows: {m: {k: v for k, v in r.items() if k != "seconds_mean"} for m, r in rows.items()}  # noqa: E731
    assert drop(a) == drop(b)
