"""hg.compare: every estimator on one problem against exact RMD (float64 reference problems)."""

import json

import pytest
import torch

import hypergradient as hg
from hypergradient.diagnostics import Comparison, why_not_exact
from hypergradient.diagnostics.comparison import agreement, default_estimators
from hypergradient.estimators import Estimator
from hypergradient.testing import problems as ref


@pytest.fixture(scope="module")
def mlp():
    p = ref.mlp(True, T=4)
    return p, p.init_hparams()


def test_exact_estimators_match_rmd(mlp):
    p, lam = mlp
    r = hg.compare(p, lam, ["rmd", "fmd", "online_rmd", ("rmd", {"storage": "checkpoint"})], memory=None)
    assert [row["name"] for row in r.rows] == ["rmd", "fmd", "online_rmd", "rmd[storage=checkpoint]"]
    for row in r.rows:
        assert row["error"] is None and row["exact"] and row["why"] is None
        assert row["cosine"] == pytest.approx(1.0, abs=1e-10)
        assert row["norm_ratio"] == pytest.approx(1.0, abs=1e-10)
        assert row["sign_agreement"] == 1.0
        assert row["seconds"] > 0 and row["cost"]["steps"] == 4
    assert r.T == 4 and r.reference == "rmd"


def test_approximate_estimator_reports_its_true_numbers(mlp):
    p, lam = mlp
    row = hg.compare(p, lam, ["one_step"]).row("one_step")
    g, exact = hg.estimate("one_step", p, lam).flat(), hg.estimate("rmd", p, lam).flat()
    cos = float(g @ exact / (g.norm() * exact.norm()))
    assert row["cosine"] == pytest.approx(cos, abs=1e-12)
    assert row["norm_ratio"] == pytest.approx(float(g.norm() / exact.norm()), abs=1e-12)
    nz = exact != 0
    assert row["sign_agreement"] == pytest.approx(float((g[nz].sign() == exact[nz].sign()).double().mean()))
    assert abs(row["norm_ratio"] - 1) > 1e-3              # not the exact scale: cosine alone would hide it
    assert row["cost"]["steps"] == 4 and row["cost"]["vjps"] == 1
    assert not row["exact"] and row["why"].startswith("approximate")
    assert row["saved_peak_bytes"] > 0 and row["heap_peak_bytes"] is None


def test_agreement_by_hand():
    a = agreement(torch.tensor([2.0, -1.0, 5.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert a["norm_ratio"] == pytest.approx(30 ** 0.5 / 2 ** 0.5)
    assert a["sign_agreement"] == 0.5                     # the reference's zero entry is ignored
    assert a["cosine"] == pytest.approx(1 / (30 ** 0.5 * 2 ** 0.5))
    assert agreement(torch.ones(2), torch.zeros(2)) == {"cosine": None, "norm_ratio": None, "sign_agreement": None}


class Broken(Estimator):
    name = "broken"

    def estimate(self, problem, lam, T, state, est_state):
        raise RuntimeError("on purpose")


def test_failing_estimators_are_rows_and_the_rest_goes_on(mlp):
    p, lam = mlp
    r = hg.compare(p, lam, ["evograd", Broken(), "one_step"], memory=None)
    evo, broken, one = r.rows
    assert "cannot differentiate optimizer hyperparameters" in evo["error"]    # does not apply: lr is learned
    assert broken["error"] == "RuntimeError: on purpose" and broken["cosine"] is None
    assert one["error"] is None and one["cosine"] is not None
    text = r.table()
    assert "on purpose" in text and "failed" in text


def test_bad_specs_raise_before_any_run(mlp):
    p, lam = mlp
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        hg.compare(p, lam, ["nope"])
    with pytest.raises(TypeError, match="name, options-dict"):
        hg.compare(p, lam, [("rmd", "graph")])
    with pytest.raises(TypeError, match="init_hparams"):
        hg.compare(p, ["rmd"])
    with pytest.raises(ValueError, match="memory must be one of"):
        hg.compare(p, lam, ["rmd"], memory="rss")
    with pytest.raises(ValueError, match="reference must be an exact"):
        hg.compare(p, lam, ["rmd"], reference="one_step")


@pytest.mark.filterwarnings("ignore::UserWarning")   # evograd / hyperdistill say what they make of the problem
def test_default_runs_every_offline_estimator_and_seeds_the_stochastic_ones():
    p = ref.linear(T=5)
    before = torch.random.get_rng_state()
    a = hg.compare(p, memory=None, seed=3)
    assert torch.equal(before, torch.random.get_rng_state())       # the global generator is restored
    assert [row["name"] for row in a.rows] == default_estimators() == sorted(hg.REGISTRY)
    es = a.row("es")
    g = hg.estimate("es", p, p.init_hparams(), seed=3).flat()
    assert es["cosine"] == pytest.approx(agreement(g, hg.estimate("rmd", p, p.init_hparams()).flat())["cosine"])
    b = hg.compare(p, estimators=["es", "pes", ("es", {"seed": 4})], memory=None, seed=3)
    assert b.rows[0]["cosine"] == es["cosine"] and b.rows[1]["cosine"] == a.row("pes")["cosine"]
    assert b.rows[2]["cosine"] != es["cosine"]           # options override the comparison's seed


def test_table_footer_explains_the_inexact_rows(mlp):
    p, lam = mlp
    text = hg.compare(p, lam, ["rmd", "one_step", "es", ("truncated_rmd", {"K": 2})], memory="both").table()
    assert "not meant to reach cosine 1" in text
    for line in ("one_step: approximate", "es: stochastic", "truncated_rmd[K=2]: truncated"):
        assert line in text
    assert "SavedTensorMeter" in text and "HeapMeter" in text


def test_every_inexact_estimator_has_a_reason():
    for name, cls in hg.REGISTRY.items():
        assert (why_not_exact(name) is None) == cls.exact, name
    assert why_not_exact("online_rmd", {"window": 2}).startswith("truncated")


def test_json_round_trips(mlp, tmp_path):
    p, lam = mlp
    r = hg.compare(p, lam, ["rmd", "one_step", ("ift", {"solver": "dense"})], memory=None)
    path = tmp_path / "c.json"
    r.to_json(str(path))
    assert json.loads(path.read_text()) == r.to_dict()
    assert Comparison.from_json(str(path)) == r
    assert Comparison.from_json(str(path)).table() == r.table()


def test_plot_writes_a_png(mlp, tmp_path):
    pytest.importorskip("matplotlib")
    p, lam = mlp
    r = hg.compare(p, lam, ["rmd", "one_step", "evograd"], memory=None)
    path = tmp_path / "c.png"
    fig = r.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2
