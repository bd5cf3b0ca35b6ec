"""The folder tree is the architecture (DESIGN.md, "Layers"): every module imports only from layers below
its own folder (or from its own folder), never an underscore name of another package, and no source file
grows past ~400 lines. Old public paths still import, with a DeprecationWarning naming the new one."""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys
import warnings

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "hypergradient"
# folder -> rank; a module may import a folder of strictly lower rank, or its own folder
LAYERS = {"core": 0, "optim": 1, "linalg": 1, "estimators": 2, "diagnostics": 3, "drivers": 4, "learners": 5,
          "higher": 5, "baselines": 5, "testing": 6, "reproduce": 7, "cli": 8}
TOP = {"__init__", "_deprecated", "__main__"}   # the package root: the public API, the old names, `python -m`
MAX_LINES = 420


def modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        yield rel, ("hypergradient." + ".".join(rel.with_suffix("").parts)).removesuffix(".__init__")


def imports(path: pathlib.Path, name: str, is_package: bool):
    """(imported module, imported names) for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            if node.module is None:      # "from . import x": x may be a submodule
                for n in names:
                    yield f"{mod}.{n}", []
            else:
                yield mod, names


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hypergradient" else None


def test_every_folder_is_a_layer():
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), f"folders without a layer: {sorted(folders - set(LAYERS))} (add to LAYERS and DESIGN.md)"
    loose = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in TOP)
    assert not loose, f"modules outside the layer folders: {loose}"
    for f in folders:
        doc = ast.get_docstring(ast.parse((SRC / f / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"{f}/__init__.py must say what lives there and what it may import"


@pytest.mark.parametrize("rel,name", list(modules()), ids=[str(r) for r, _ in modules()])
def test_imports_go_down_and_stay_public(rel, name):
    own = folder(name)
    if own is None or own in TOP:
        return                                      # the package root (its __init__ and _deprecated)
    for mod, names in imports(SRC / rel, name, rel.name == "__init__.py"):
        other = folder(mod)
        if mod.split(".")[0] != "hypergradient" or other is None:
            continue
        if other in TOP:
            pytest.fail(f"{name} imports the package root's {mod}")
        assert other == own or LAYERS[other] < LAYERS[own], \
            f"{name} (layer {own}) imports {mod} (layer {other}), which is not below it"
        if other != own:
            private = [m for m in mod.split(".")[2:] if m.startswith("_")] + [n for n in names if n.startswith("_")]
            assert not private, f"{name} imports private {private} from {mod} (another package)"


def test_source_files_stay_small():
    big = {str(r): n for r, _ in modules() if (n := len((SRC / r).read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these modules: {big}"


def test_the_checker_sees_a_violation(tmp_path):
    """The import walker resolves relative imports: an upward and a private import are both found."""
    f = tmp_path / "m.py"
    f.write_text("from ..drivers import online\nfrom ..estimators.base import _private\nimport torch\n")
    got = list(imports(f, "hypergradient.core.m", False))
    assert ("hypergradient.drivers", ["online"]) in got and ("hypergradient.estimators.base", ["_private"]) in got
    assert folder("hypergradient.drivers") == "drivers" and LAYERS["drivers"] > LAYERS["core"]


@pytest.mark.parametrize("old,new", [("hypergradient.problem", "hypergradient.core.problem"),
                                     ("hypergradient.hparams", "hypergradient.core.hyper"),
                                     ("hypergradient.experiments.metalearners", "hypergradient.learners")])
def test_moved_modules_import_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    sys.modules.pop(old, None)


def test_renamed_names_warn():
    import hypergradient as hg
    with pytest.warns(DeprecationWarning, match="HyperSpec"):
        assert hg.HyperParameters is hg.HyperSpec
    with pytest.warns(DeprecationWarning, match="IFT"):
        from hypergradient.estimators import IFTCG
    assert IFTCG().solver == "cg"
    with pytest.warns(DeprecationWarning, match="maxiter") as got:
        hg.estimators.get("ift_neumann", N=3)      # through the library's own frames ...
    assert got[0].filename == __file__             # ... attributed to the caller (shown by default filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import hypergradient.learners  # noqa: F401  (the new paths never warn)


def test_flat_problem_keywords_warn_and_build_the_same_problem():
    """The 0.2 keywords of InnerProblem / ProblemLearner map onto Hypers / Data / Settings (one warning
    each, naming the new place); the problem is the same; hg.info's moved keys are fields now."""
    import torch
    from torch import nn

    import hypergradient as hg
    from hypergradient.learners import ProblemLearner, supervised
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    mse = supervised(torch.nn.functional.mse_loss)
    new = hg.InnerProblem(model, mse, mse, hg.optim.sgd(lr=hg.Hyper(0.1)), hg.Hypers(), hg.Data([(X, y)], (X, y)),
                          horizon=3, settings=hg.Settings(seed=4))
    with pytest.warns(DeprecationWarning, match=r"is now InnerProblem\((optimizer|hypers|data|settings)=") as got:
        old = hg.InnerProblem(model, mse, mse, "sgd", optimizer_values={"lr": hg.Hyper(0.1)}, train_batches=[(X, y)],
                              val_batches=(X, y), horizon=3, seed=4)
    assert len(got) == 4 and all(w.filename == __file__ for w in got)
    assert old.seed == new.seed == 4 and old.spec.specs == new.spec.specs
    lam = new.init_hparams()
    a, b = hg.estimate("rmd", new, lam), hg.estimate("rmd", old, lam)
    assert torch.equal(a.flat(), b.flat())
    with pytest.warns(DeprecationWarning, match=r"hg\.val_loss"):
        assert a.info["val_loss"] is a.val_loss
    with pytest.warns(DeprecationWarning, match=r"ProblemLearner\(optimizer="):
        learner = ProblemLearner(model, mse, mse, horizon=3, optimizer_values={"lr": hg.Hyper(0.1)})
    assert list(learner.init_hparams()) == ["optim.lr"]
    with pytest.raises(TypeError, match="takes no data"):
        ProblemLearner(model, mse, mse, horizon=3, train_batches=[(X, y)])
    assert new.hparams_view(lam)["lr"].item() == pytest.approx(0.1)
