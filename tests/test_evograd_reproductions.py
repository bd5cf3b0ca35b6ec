"""The EvoGrad reproductions (issue 18): the toy's estimates are the registered estimator's and track the
closed form, the rotation is differentiable and learnable, the label-noise problem's noise and weights,
the cost sweep's measurements, and each run's resume. The paper-scale runs are
``hypergradient reproduce evograd-toy | rotation | label-noise``."""

from __future__ import annotations


import pytest
import torch

from hypergradient.reproduce import evograd_toy as toy
from hypergradient.reproduce import label_noise as ln
from hypergradient.reproduce import rotation as rot


def test_toy_estimates_track_the_closed_form_and_the_noise_falls_with_the_population():
    cfg = toy.ToyConfig(n_lams=12, trials=30)
    lams = torch.linspace(cfg.lam_lo, cfg.lam_hi, cfg.n_lams, dtype=torch.float64)
    truth = toy.closed_form(lams)
    e10, e100 = toy.estimates(cfg, 10), toy.estimates(cfg, 100)
    corr = torch.corrcoef(torch.stack([e100.mean(1), truth]))[0, 1]
    assert corr > 0.98 and e100.std(1).mean() < e10.std(1).mean()
    # the toy problem is the paper's: x*(λ) = 1/(1+λ) is where f_T's gradient vanishes
    p = toy.toy_problem()
    lam = {"loss.lam": torch.tensor(0.7, dtype=torch.float64)}
    s = p.init_state([torch.tensor(1 / 1.7, dtype=torch.float64)])
    assert abs(float(p.step(s, lam).params[0]) - 1 / 1.7) < 1e-12


def test_toy_trajectory_with_the_closed_form_moves_lambda_toward_one():
    cfg = toy.ToyConfig()
    t = toy.trajectories(cfg, 2, 0.0, 0.1, 200, None)
    assert len(t["lam"]) == 201 and t["lam"][0] == 0.1 and t["lam"][-1] > 0.5


def test_rotation_is_differentiable_and_zero_is_the_identity():
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(rot.rotate(x, 0.0), x, atol=1e-6)
    a = torch.tensor(0.3, requires_grad=True)
    (g,) = torch.autograd.grad(rot.rotate(x, a).sum() + (rot.rotate(x, a) ** 2).sum(), a)
    assert torch.isfinite(g) and g != 0
    back = rot.rotate(rot.rotate(x, 0.5), -0.5)
    centre = (slice(None), slice(None), slice(2, 6), slice(2, 6))
    assert (back[centre] - x[centre]).abs().mean() < 0.2              # (interpolation blurs; corners leave)


def test_rotation_problem_learns_a_positive_angle_toward_the_truth():
    cfg = rot.RotationConfig(T=60, seeds=1)
    rec = rot.run_method("T1-T2 (one_step)", cfg, 0)
    assert rec["angle_deg"] > 2 and rec["angle_trajectory"][0] != rec["angle_deg"]
    base = rot.run_method("baseline", cfg, 0)
    assert base["angle_deg"] == 0


def test_label_noise_replaces_the_stated_fraction_and_the_baseline_has_no_weights():
    cfg = ln.LabelNoiseConfig(T=5)
    d = ln.splits(cfg, 0)
    frac = (d.train[1] != d.clean_train).double().mean().item()
    assert abs(frac - 0.4 * 0.9) < 0.05                                # uniform noise keeps 1/10 of them
    assert ln.build(cfg, d, 0, weighted=False).init_hparams() == {}
    lam = ln.build(cfg, d, 0, weighted=True).init_hparams()
    assert all(k.startswith("loss.mwn.") for k in lam)


def test_cost_sweep_measures_both_methods_side_by_side():
    cfg = ln.LabelNoiseConfig(widths=(32,), cost_steps=2)
    c = ln.cost_sweep(cfg)["32"]
    for m in ln.COST_METHODS:
        assert c[m]["seconds_median"] > 0 and c[m]["saved_peak_bytes"] > 0


@pytest.mark.parametrize("name,make", [("toy", lambda: toy.ToyConfig.make_quick(n_lams=5, trials=3, traj_long=6)),
                                       ("rotation", lambda: rot.RotationConfig.make_quick(T=6)),
                                       ("label-noise", lambda: ln.LabelNoiseConfig.make_quick(T=6, widths=(16,),
                                                                                              cost_steps=1))])
def test_runs_resume_from_their_files_and_report_goals(tmp_path, name, make):
    module = {"toy": toy, "rotation": rot, "label-noise": ln}[name]
    cfg = make()
    out = str(tmp_path / name)
    first = module.run(cfg, out, quiet=True)
    assert first["goals"] and (tmp_path / name / "table.md").exists()
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / name / "seeds").iterdir()}
    module.run(cfg, out, quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / name / "seeds").iterdir()} == stamp   # nothing rerun
