"""The command line: list, verify and a tiny demo run end to end."""

import json

import torch

from hypergradient import cli
from hypergradient.cli import demo
from hypergradient.optim import OPTIMIZERS


def test_list_json_names_every_estimator_and_optimizer(capsys):
    assert cli.main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {e["name"] for e in out["estimators"]}
    assert {"rmd", "fmd", "drmad", "one_step", "first_order", "hyperdistill", "evograd"} <= names
    assert {o["name"] for o in out["optimizers"]} == set(OPTIMIZERS)      # every optimizer, with what it learns
    for o in out["optimizers"]:
        assert o["hyperparameters"] == list(OPTIMIZERS[o["name"]].hparam_names) and set(o["defaults"]) == set(o["hyperparameters"])
    for e in out["estimators"]:
        assert set(e) >= {"exact", "online", "optimizer_hparams", "memory"}


def test_verify_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "verify.json"
    assert cli.main(["verify", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert all(r["ok"] for r in rows)
    exact = [r for r in rows if r["exact"]]
    assert exact and all(r["fd_rel_err"] < 1e-6 for r in exact)


def test_demo_improves_validation_loss(tmp_path):
    torch.manual_seed(0)
    r = demo.run(outer_steps=3, T=10, quiet=True, json_path=str(tmp_path / "demo.json"))
    assert r["learned"]["val_loss"] < r["initial"]["val_loss"]
    assert json.loads((tmp_path / "demo.json").read_text())["T"] == 10
