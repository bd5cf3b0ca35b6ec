"""``hypergradient compare module:function``: :func:`hypergradient.diagnostics.compare` on the user's
problem. The entry point is ``package.module:function`` (imported like ``python -m``, the current folder
first on the path) or ``path/to/file.py:function``; called with no arguments, it returns an
:class:`~hypergradient.core.problem.InnerProblem` (λ = ``problem.init_hparams()``) or a tuple
``(problem, hparams)``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any, Mapping

from ..core.problem import InnerProblem
from ..core.types import HparamsLike
from ..diagnostics.comparison import EstimatorSpec, compare

__all__ = ["EntryPointError", "load", "parse_estimators", "run"]

USAGE = "give the entry point as package.module:function or path/to/file.py:function"


class EntryPointError(Exception):
    """The entry point cannot be found or returns the wrong thing (the message names the fix)."""


def _module(target: str) -> ModuleType:
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise EntryPointError(f"no file {target!r}; {USAGE}")
        name = "_hypergradient_entry_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise EntryPointError(f"cannot import {target!r} as Python; {USAGE}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module          # dataclasses and pickling look their module up here
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())     # as `python -m` does: modules of the current folder import
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name is None or not target.startswith(e.name):
            raise                           # an import inside the user's module failed: its own traceback
        raise EntryPointError(f"no module named {target!r}: run from the folder that holds it, add that folder to "
                              f"PYTHONPATH, or {USAGE}") from None


def load(entry: str) -> tuple[InnerProblem, HparamsLike]:
    """(problem, λ) from the entry point ``entry`` (module docstring)."""
    target, sep, fn = entry.rpartition(":")
    if not sep or not target or not fn.isidentifier():
        raise EntryPointError(f"{entry!r} is not an entry point; {USAGE}")
    module = _module(target)
    obj = getattr(module, fn, None)
    if obj is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise EntryPointError(f"{target} has no {fn!r}; its functions: {names or 'none'}")
    if not callable(obj):
        raise EntryPointError(f"{entry} is a {type(obj).__name__}, not a function; point at a function that "
                              "builds the problem")
    out = obj()
    if isinstance(out, InnerProblem):
        return out, out.init_hparams()
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], InnerProblem) and isinstance(out[1], Mapping):
        return out[0], out[1]
    got = type(out).__name__ if not isinstance(out, tuple) else f"a tuple ({', '.join(type(x).__name__ for x in out)})"
    raise EntryPointError(f"{entry}() returned {got}; return an InnerProblem (λ = problem.init_hparams()) or a "
                          "tuple (problem, hparams)")


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text                         # a bare word: solver=cg


def parse_estimators(text: str) -> list[EstimatorSpec]:
    """``"rmd,one_step,ift[solver=dense,maxiter=50]"`` → ``["rmd", "one_step", ("ift", {"solver": "dense",
    "maxiter": 50})]`` (the labels of compare's table read back)."""
    out: list[EstimatorSpec] = []
    for item in re.split(r",(?![^\[]*\])", text):          # commas outside the brackets
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\[([^\]]*)\])?\s*", item)
        if m is None:
            raise EntryPointError(f"cannot read the estimator {item.strip()!r} in {text!r}; give names separated by "
                                  "commas, options in brackets: rmd,one_step,ift[solver=dense]")
        name, opts = m.group(1), m.group(2)
        if opts is None:
            out.append(name)
            continue
        pairs = [p.split("=", 1) for p in opts.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise EntryPointError(f"options of {name} must be key=value pairs, got [{opts}]; e.g. ift[solver=dense]")
        out.append((name, {k.strip(): _value(v.strip()) for k, v in pairs}))
    return out


def run(entry: str, *, estimators: str | None, T: int | None, seed: int, memory: str, json_path: str | None,
        plot_path: str | None, reference: str = "rmd") -> int:
    """The command: load, compare, print the table, write the JSON / plot; 2 with the message on an
    entry-point or option error."""
    try:
        specs = parse_estimators(estimators) if estimators else None
        refs = parse_estimators(reference)
        if len(refs) != 1:
            raise EntryPointError(f"--reference takes one estimator, got {reference!r}")
        problem, lam = load(entry)
    except EntryPointError as e:
        print(f"hypergradient compare: error: {e}", file=sys.stderr)
        return 2
    try:
        result = compare(problem, lam, specs, T=T, seed=seed, memory=None if memory == "none" else memory,
                         reference=refs[0])
    except (ValueError, TypeError, RuntimeError) as e:   # checks before any run, or the reference failed
                                                         # (another estimator's failure is a row)
        print(f"hypergradient compare: error: {e}", file=sys.stderr)
        return 2
    print(result.table())
    if json_path:
        result.to_json(json_path)
    if plot_path:
        result.plot(plot_path)
    return 0
