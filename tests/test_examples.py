"""Every example in examples/ runs at its ``--quick`` size (what .ci/run relies on) and shows what its
docstring claims. The quick sizes are smoke sizes: the checks are the direction of each claim, not the
full-size numbers (examples/README.md has those)."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


@pytest.fixture(autouse=True)
def float32():
    """The examples run as a user runs them: torch's default dtype (conftest makes the suite's float64)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


def test_every_example_is_tested_here():
    scripts = {f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py")}
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    assert scripts <= tested, f"examples without a test here: {sorted(scripts - tested)}"


def test_maml_higher():
    """higher's MAML example through hypergradient.higher and through the native API: the same
    meta-gradients (float64), and the unchanged higher loop meta-trains."""
    import maml_higher
    out = maml_higher.main(["--quick"])
    assert out["relative_difference"] < 1e-10
    assert len(out["accuracy"]) == 3


def test_per_parameter_lr():
    import per_parameter_lr
    out = per_parameter_lr.main(["--quick"])
    assert out["n_hparams"] > 2000
    assert out["val_loss_after"] < 0.8 * out["val_loss_before"]
    assert out["val_acc_after"] >= out["val_acc_before"]
    assert all(lo < hi for lo, _, hi in out["lr_spread"].values())       # the rates spread per weight


def test_meta_weight_net():
    import meta_weight_net
    out = meta_weight_net.main(["--quick"])
    assert out["weight_clean"] > 2 * out["weight_noisy"]
    assert out["clean_share"] > out["clean_fraction"]
    assert out["test_acc_weighted"] > out["test_acc_unweighted"]


def test_maml_anil_sinusoid():
    import maml_anil_sinusoid
    out = maml_anil_sinusoid.main(["--quick"])
    for method in ("maml", "anil"):
        assert out[method]["after"] < out[method]["before"]


def test_lr_schedule_fmd(tmp_path):
    import lr_schedule_fmd
    pytest.importorskip("matplotlib")
    plot = tmp_path / "schedules.png"
    out = lr_schedule_fmd.main(["--quick", "--plot", str(plot)])
    assert out["val_loss_after"] < 0.5 * out["val_loss_before"]
    assert len(out["lr"]) == out["K"] and all(0.0 <= m <= 0.99 + 1e-6 for m in out["momentum"])
    assert plot.stat().st_size > 1000


def test_compare_estimators():
    """Exact RMD is its own reference; one_step's cosine hides a norm several times too small."""
    import compare_estimators
    out = compare_estimators.main(["--quick", "--estimators", "rmd,fmd,one_step"])
    rows = {r["name"]: r for r in out["rows"]}
    assert rows["rmd"]["cosine"] == pytest.approx(1.0) and rows["fmd"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert rows["one_step"]["norm_ratio"] < 0.5
