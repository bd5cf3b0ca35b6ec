"""Checkpoint and resume (ISSUE 12, part 3): a run interrupted (Ctrl-C, or SIGKILL of a real process)
and resumed from its checkpoint ends with bit-for-bit the λ, initialization and history of an
uninterrupted run; a checkpoint of another configuration, or a corrupted one, is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import hypergradient as hg
from hypergradient.drivers import meta_train, run_online

from conftest import make_problem
from test_drivers import regression_problem

META_SCRIPT = """
import os, signal, sys, torch
from hypergradient.drivers import meta_train
from hypergradient.learners import ANIL, SinusoidTasks, anil_mlp

def run(path, kill_after=None):
    torch.set_default_dtype(torch.float64)     # as the test suite runs (conftest); the same in both processes
    torch.manual_seed(0)
    learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=4)
    lam = learner.init_hparams()
    outer = torch.optim.Adam(lam.values(), lr=1e-2)
    def die(m):
        if kill_after is not None and m.iteration + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)          # a hard kill: nothing after this line runs
    res = meta_train(learner, "hyperdistill", lam, outer, SinusoidTasks(dtype=torch.float64), iterations=5,
                     meta_batch=2, seed=3, gamma=0.9, period=2, checkpoint=path, callback=die, progress=False,
                     lr_decay=True)
    return lam, res

def run_online_job(path, kill_after=None):
    from hypergradient.drivers import run_online
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    learner = ANIL(anil_mlp((1, 8, 8, 1), act=torch.nn.Tanh).double(), horizon=4)
    tasks = SinusoidTasks(dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    problems = [learner.problem(tasks.sample(gen)) for _ in range(2)]
    lam = learner.init_hparams()
    outer = torch.optim.Adam(lam.values(), lr=1e-2)
    steps = [0]
    def die(states, value):
        steps[0] += 1
        if kill_after is not None and steps[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    res = run_online(problems, "hyperdistill", lam, outer, episodes=5, gamma=0.9, period=2, checkpoint=path,
                     callback=die, progress=False)
    return lam, res

if __name__ == "__main__":
    (run if sys.argv[3] == "meta" else run_online_job)(sys.argv[1], int(sys.argv[2]))
"""


def killed_and_resumed(tmp_path, mode: str, kill_after: int):
    """(uninterrupted run, resumed run, the checkpoint the killed process left): the job ``mode`` of
    META_SCRIPT run here, then in a subprocess that SIGKILLs itself after ``kill_after`` steps, then
    here again from the checkpoint."""
    (tmp_path / "meta_job.py").write_text(textwrap.dedent(META_SCRIPT))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        job = importlib.import_module("meta_job")
        fn = job.run if mode == "meta" else job.run_online_job
        ref = fn(None)
        ckpt = str(tmp_path / f"{mode}.ckpt")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run([sys.executable, str(tmp_path / "meta_job.py"), ckpt, str(kill_after), mode],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert os.path.exists(ckpt) and not os.path.exists(ckpt + ".tmp")
        left = torch.load(ckpt, weights_only=True)
        return ref, fn(ckpt), left
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("meta_job", None)


def test_meta_training_killed_and_resumed_is_bitwise_the_uninterrupted_run(tmp_path):
    (lam_ref, ref), (lam, res), left = killed_and_resumed(tmp_path, "meta", 3)
    assert left["payload"]["done"] == 3                 # resumes after meta-iteration 3 of 5
    for k in lam_ref:
        assert torch.equal(lam[k], lam_ref[k]), k
    for n in ref.init:
        assert torch.equal(res.init[n], ref.init[n]), n
    assert res.history == ref.history and res.cost == ref.cost and res.outer_steps == ref.outer_steps
    assert res.est_state.episodes == ref.est_state.episodes == 10
    assert torch.equal(res.est_state.generator.get_state(), ref.est_state.generator.get_state())


def test_online_run_killed_mid_episode_and_resumed_is_bitwise_the_uninterrupted_run(tmp_path):
    (lam_ref, ref), (lam, res), left = killed_and_resumed(tmp_path, "online", 10)
    assert left["payload"]["done"] == 2                 # killed in episode 3 of 5
    assert all(torch.equal(lam[k], lam_ref[k]) for k in lam)
    assert res.history == ref.history and res.cost == ref.cost
    assert res.est_state.state_dict()["theta"] == ref.est_state.state_dict()["theta"]


def _online(path, stop_at=None):
    problem = regression_problem(T=4)
    lam = problem.init_hparams()
    outer = torch.optim.Adam(lam.values(), lr=0.05)
    seen = [0]

    def interrupt(states, value):
        seen[0] += 1
        if seen[0] == stop_at:
            raise KeyboardInterrupt
    res = run_online(problem, "evograd", lam, outer, episodes=4, sigma=0.01, population=3, checkpoint=path,
                     callback=interrupt, progress=False, lr_decay=True)
    return lam, res


def test_online_run_interrupted_by_ctrl_c_resumes_bitwise(tmp_path):
    lam_ref, ref = _online(None)
    path = str(tmp_path / "online.ckpt")
    with pytest.raises(KeyboardInterrupt):
        _online(path, stop_at=10)                # in episode 3: the checkpoint holds episodes 1-2
    saved = torch.load(path, weights_only=True)
    assert saved["payload"]["done"] == 2 and saved["version"] == hg.__version__
    lam, res = _online(path)
    assert all(torch.equal(lam[k], lam_ref[k]) for k in lam)
    assert res.history == ref.history and res.cost == ref.cost and res.outer_steps == ref.outer_steps
    assert all(torch.equal(a, b) for a, b in zip(res.state.params, ref.state.params))
    again, res2 = _online(path)                  # a finished run resumes to its end at once
    assert all(torch.equal(again[k], lam_ref[k]) for k in lam) and res2.history == ref.history


def test_offline_run_resumes_bitwise(tmp_path):
    def run(path, stop_at=None):
        problem = make_problem("sgd", dict(lr=hg.Hyper(0.2), momentum=0.5), T=4)
        lam = problem.init_hparams()

        def stop(k, h):
            if k + 1 == stop_at:
                raise KeyboardInterrupt
        res = hg.run_offline(problem, "rmd", lam, torch.optim.Adam(lam.values(), lr=0.05), 5, checkpoint=path,
                             checkpoint_every=2, callback=stop, progress=False)
        return lam, res
    lam_ref, ref = run(None)
    path = str(tmp_path / "offline.ckpt")
    with pytest.raises(KeyboardInterrupt):
        run(path, stop_at=3)                     # saved at 2 (every 2), then at 3 on Ctrl-C
    assert torch.load(path, weights_only=True)["payload"]["done"] == 3
    lam, res = run(path)
    assert all(torch.equal(lam[k], lam_ref[k]) for k in lam) and res.history == ref.history
    assert res.cost == ref.cost


def test_checkpoints_of_another_configuration_or_corrupted_are_refused(tmp_path):
    path = str(tmp_path / "run.ckpt")
    _online(path)
    problem = regression_problem(T=4)
    lam = problem.init_hparams()
    with pytest.raises(RuntimeError, match="another configuration"):
        run_online(problem, "evograd", lam, torch.optim.Adam(lam.values(), lr=0.05), episodes=5, sigma=0.01,
                   population=3, checkpoint=path, progress=False, lr_decay=True)
    good = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(good[: len(good) // 2])          # truncated
    with pytest.raises(RuntimeError, match="cannot be read.*delete it"):
        _online(path)
    assert open(path, "rb").read() == good[: len(good) // 2]   # left as it is
    with pytest.raises(ValueError, match="checkpoint_every"):
        run_online(problem, "one_step", lam, torch.optim.Adam(lam.values()), checkpoint=path, checkpoint_every=0)
