"""The command line: list, verify, compare and a tiny demo run end to end; its conventions (--version,
help on every option, wrapped tables, a closed pipe)."""

import argparse
import json
import subprocess
import sys

import pytest
import torch

import hypergradient
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
    assert all((r["why"] is None) == r["exact"] for r in rows)      # the inexact rows say why cos(RMD) is not 1
    out = capsys.readouterr().out
    assert "not meant to be 1" in out and "one_step: approximate" in out and "es: stochastic" in out


def test_demo_improves_validation_loss(tmp_path):
    torch.manual_seed(0)
    r = demo.run(outer_steps=3, T=10, quiet=True, json_path=str(tmp_path / "demo.json"))
    assert r["learned"]["val_loss"] < r["initial"]["val_loss"]
    assert json.loads((tmp_path / "demo.json").read_text())["T"] == 10


# ---- conventions: --version, help on every option, wrapped tables, a closed pipe ---------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"hypergradient {hypergradient.__version__}"


def test_every_option_of_every_command_has_help_and_shows_its_default():
    p = cli.parser()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == {"demo", "list", "verify", "compare", "reproduce"}
    for name, parser in [("hypergradient", p), *subs.items()]:
        fmt = parser._get_formatter()
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{name} {action.dest} has no help"
            if action.option_strings and action.default is not argparse.SUPPRESS:
                assert "default" in fmt._get_help_string(action), f"{name} {action.option_strings} hides its default"
        text = parser.format_help()
        assert "{'" not in text and "%%" not in text, f"{name}'s help is garbled"
    assert "40% label noise" in subs["reproduce"].format_help()      # a literal % in a help text stays one


def test_list_table_wraps_cells_instead_of_cutting_words(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    words = set(out.split())
    for e in json.loads(_run_json()):
        for text in (e["memory"], e["summary"]):
            assert set(text.split()) <= words, text


def _run_json():
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli.main(["list", "--json"])
    return json.dumps(json.loads(buf.getvalue())["estimators"])


def test_a_closed_pipe_exits_quietly():
    """`hypergradient list --json | head -1`: the reader is gone before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "hypergradient", "list", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                          # closed before the child (importing torch) writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# ---- compare ------------------------------------------------------------------------------------------
ENTRY = '''
from hypergradient.testing import problems


def make_problem():
    return problems.linear(T=5)


def make_pair():
    p = problems.linear(T=5)
    return p, p.init_hparams()


def wrong():
    return 3


NOT_A_FUNCTION = 1
'''


@pytest.fixture
def entry(tmp_path):
    path = tmp_path / "cli_entry_mod.py"
    path.write_text(ENTRY)
    return path


def test_compare_on_a_file_entry_point(entry, tmp_path, capsys):
    out_json = tmp_path / "c.json"
    code = cli.main(["compare", f"{entry}:make_problem", "--estimators", "rmd,one_step,es[sigma=0.1,population=2]",
                     "--json", str(out_json), "--seed", "1", "--memory", "none"])
    assert code == 0
    text = capsys.readouterr().out
    assert "one_step" in text and "not meant to reach cosine 1" in text
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["name"] for r in rows] == ["rmd", "one_step", "es[sigma=0.1,population=2]"]
    assert rows[0]["cosine"] == pytest.approx(1.0) and rows[2]["options"] == {"sigma": 0.1, "population": 2}


def test_compare_on_a_module_entry_point_returning_a_pair(entry, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "cli_entry_mod", raising=False)
    png = tmp_path / "c.png"
    assert cli.main(["compare", "cli_entry_mod:make_pair", "--estimators", "rmd,drmad", "--plot", str(png)]) == 0
    assert "drmad" in capsys.readouterr().out and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("target,message", [
    ("{entry}:nope", "has no 'nope'; its functions: ['make_pair', 'make_problem', 'wrong']"),
    ("{entry}:wrong", "returned int; return an InnerProblem"),
    ("{entry}:NOT_A_FUNCTION", "is a int, not a function"),
    ("{entry}", "is not an entry point"),
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'"),
    ("missing/file.py:make", "no file 'missing/file.py'"),
])
def test_compare_entry_point_errors_name_the_fix(entry, capsys, target, message):
    assert cli.main(["compare", target.format(entry=entry)]) == 2
    assert message in capsys.readouterr().err


def test_compare_bad_estimators_are_an_error(entry, capsys):
    assert cli.main(["compare", f"{entry}:make_problem", "--estimators", "rmd,nope"]) == 2
    assert "unknown estimator 'nope'" in capsys.readouterr().err
    assert cli.main(["compare", f"{entry}:make_problem", "--estimators", "ift[solver]"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_compare_reference_option(entry, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert cli.main(["compare", f"{entry}:make_problem", "--estimators", "rmd,one_step", "--reference",
                     "rmd[storage=recompute]", "--memory", "none", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["rows"][0]["cosine"] == pytest.approx(1.0)
    assert cli.main(["compare", f"{entry}:make_problem", "--reference", "rmd,fmd"]) == 2
    assert "--reference takes one estimator" in capsys.readouterr().err
    assert cli.main(["compare", f"{entry}:make_problem", "--estimators", "rmd", "--reference", "one_step"]) == 2
    assert "must be an exact estimator" in capsys.readouterr().err
